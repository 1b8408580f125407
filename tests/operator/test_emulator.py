"""The emulator behaves like an API server where our operator depends on it."""

from __future__ import annotations

import asyncio
import json

import aiohttp

from tests.support.k8s_emulator import K8sEmulator, label_selector_matches

DEPLOY = "apps/v1/deployments"


def deployment(name: str, labels: dict[str, str] | None = None, owner_uid: str | None = None) -> dict:
    meta: dict = {"name": name, "namespace": "ns", "labels": labels or {}}
    if owner_uid:
        meta["ownerReferences"] = [{"apiVersion": "bookgen.io/v1alpha1", "kind": "BookGenQueue", "name": "q",
                                    "uid": owner_uid, "controller": True}]
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
            "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}}


async def api(emulator: K8sEmulator, method: str, path: str, body=None, ctype="application/merge-patch+json"):
    async with aiohttp.ClientSession() as session, session.request(
        method, emulator.base_url + path, data=None if body is None else json.dumps(body),
        headers={"Content-Type": ctype if method == "PATCH" else "application/json"},
    ) as resp:
        return resp.status, await resp.json()


async def test_create_assigns_identity_and_conflicts_on_duplicates(emulator: K8sEmulator) -> None:
    status, created = await api(emulator, "POST", "/apis/apps/v1/namespaces/ns/deployments", deployment("a"))
    assert status == 201
    meta = created["metadata"]
    assert meta["uid"] and meta["resourceVersion"] and meta["generation"] == 1 and meta["creationTimestamp"]
    status, error = await api(emulator, "POST", "/apis/apps/v1/namespaces/ns/deployments", deployment("a"))
    assert (status, error["reason"]) == (409, "AlreadyExists")
    status, error = await api(emulator, "GET", "/apis/apps/v1/namespaces/ns/deployments/missing")
    assert (status, error["reason"]) == (404, "NotFound")


async def test_generation_status_and_noop_writes(emulator: K8sEmulator) -> None:
    _, created = await api(emulator, "POST", "/apis/apps/v1/namespaces/ns/deployments", deployment("a"))
    rv = created["metadata"]["resourceVersion"]
    path = "/apis/apps/v1/namespaces/ns/deployments/a"
    _, same = await api(emulator, "PATCH", path, {"spec": {"replicas": 1}, "status": {"replicas": 9}})
    assert same["metadata"]["resourceVersion"] == rv, "a no-op write must not bump resourceVersion"
    assert "status" not in same, "main-resource writes ignore status"
    _, labelled = await api(emulator, "PATCH", path, {"metadata": {"labels": {"x": "1"}}})
    assert labelled["metadata"]["generation"] == 1 and labelled["metadata"]["resourceVersion"] != rv
    _, scaled = await api(emulator, "PATCH", path, {"spec": {"replicas": 3}})
    assert scaled["metadata"]["generation"] == 2
    status_patch = {"status": {"readyReplicas": 3}, "spec": {"replicas": 7}}
    _, with_status = await api(emulator, "PATCH", path + "/status", status_patch)
    assert with_status["status"] == {"readyReplicas": 3} and with_status["spec"]["replicas"] == 3
    status, error = await api(emulator, "PATCH", path, {"metadata": {"resourceVersion": "1"}, "spec": {"replicas": 4}})
    assert (status, error["reason"]) == (409, "Conflict")


async def test_label_selectors_and_namespaces_list(emulator: K8sEmulator) -> None:
    await emulator.create_object(DEPLOY, deployment("a", {"app": "x", "tier": "w"}))
    await emulator.create_object(DEPLOY, deployment("b", {"app": "y"}))
    _, listed = await api(emulator, "GET", "/apis/apps/v1/deployments?labelSelector=app%3Dx,tier")
    assert [o["metadata"]["name"] for o in listed["items"]] == ["a"]
    status, _ = await api(emulator, "GET", "/api/v1/namespaces")  # kmock 0.8 raised ValueError here
    assert status == 200
    assert label_selector_matches("app in (x, y),!gone", {"app": "y"})
    assert not label_selector_matches("app notin (x,y)", {"app": "y"})


async def test_owner_references_are_garbage_collected(emulator: K8sEmulator) -> None:
    owner = await emulator.create_object("bookgen.io/v1alpha1/bookgenqueues",
                                         {"metadata": {"name": "q", "namespace": "ns"}, "spec": {}})
    await emulator.create_object(DEPLOY, deployment("child", owner_uid=owner["metadata"]["uid"]))
    await emulator.create_object(DEPLOY, deployment("stranger"))
    status, _ = await api(emulator, "DELETE", "/apis/bookgen.io/v1alpha1/namespaces/ns/bookgenqueues/q")
    assert status == 200
    assert [o["metadata"]["name"] for o in emulator.objects_of(DEPLOY)] == ["stranger"]
    assert [c.verb for c in emulator.writes()] == ["delete"]


async def test_watch_streams_changes_after_a_resource_version(emulator: K8sEmulator) -> None:
    first = await emulator.create_object(DEPLOY, deployment("a"))
    since = first["metadata"]["resourceVersion"]
    url = f"{emulator.base_url}/apis/apps/v1/deployments?watch=true&resourceVersion={since}"
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        await emulator.create_object(DEPLOY, deployment("b"))
        await emulator.delete_object(DEPLOY, "ns", "a")
        lines = [json.loads(await asyncio.wait_for(resp.content.readline(), 5)) for _ in range(2)]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in lines] == [("ADDED", "b"), ("DELETED", "a")]
