"""End to end: the real kopf operator (our handlers) against the Kubernetes API emulator."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.operator.conftest import BGQ, OBSERVED_CALLS, RunningOperator, eventually

NS = "books"
DEPLOY, STS = "apps/v1/deployments", "apps/v1/statefulsets"
API_CALLS_FILE = Path(__file__).resolve().parents[2] / "operator" / "api-calls.json"
#: Test modules whose API calls (operator and autoscaler) make up operator/api-calls.json.
# (named to sort before this module: the check runs after their calls are in)
CONTRIBUTORS = {"test_autoscale_e2e.py", "test_children_e2e.py", "test_coordination_e2e.py", "test_e2e.py"}


def queue(name: str = "demo", spec: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"apiVersion": "bookgen.io/v1alpha1", "kind": "BookGenQueue",
            "metadata": {"name": name, "namespace": NS}, "spec": spec or {}}


def conditions(op: RunningOperator, name: str = "demo") -> dict[str, dict[str, Any]]:
    obj = op.emulator.get_object(BGQ, NS, name) or {}
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


async def test_missing_external_secret_is_reported_without_a_hot_loop(kopf_operator: RunningOperator) -> None:
    emu = kopf_operator.emulator
    spec = {"redis": {"mode": "external", "url": "redis://redis.example:6379/0",
                      "passwordSecretRef": {"name": "absent", "key": "password"}}}
    created = await emu.create_object(BGQ, queue(spec=spec))
    uid = created["metadata"]["uid"]
    ready = await eventually(lambda: conditions(kopf_operator).get("Ready"), what="a Ready condition")
    assert ready["status"] == "False" and ready["reason"] == "SecretNotFound"
    assert "books/absent" in ready["message"] and "does not exist" in ready["message"]
    first = kopf_operator.reconciles(uid)
    await asyncio.sleep(3)  # a window in which a hot loop would reconcile dozens of times
    assert kopf_operator.reconciles(uid) - first <= 1
    assert not emu.objects_of(DEPLOY, NS), "nothing is rolled out while the Redis password is missing"

    # The user creates the Secret: the next retry (after the 30 s backoff) rolls the queue out.
    await emu.create_object("v1/secrets", {"metadata": {"name": "absent", "namespace": NS},
                                           "stringData": {"password": "s3cret"}})
    await eventually(lambda: emu.get_object(DEPLOY, NS, "demo-worker-content"), timeout=45,
                     what="the rollout after the Secret appeared")
    ready = await eventually(lambda: conditions(kopf_operator)["Ready"]["reason"] != "SecretNotFound" and
                             conditions(kopf_operator)["Ready"], what="Ready no longer SecretNotFound")
    assert ready["reason"] == "PoolsNotReady"


async def test_invalid_spec_is_reported_and_not_retried(kopf_operator: RunningOperator) -> None:
    emu = kopf_operator.emulator
    # Passes a lenient client but not our rules: a pool consuming a queue that is not declared.
    spec = {"queues": ["monitoring"], "pools": [{"name": "mon", "queues": ["monitoring", "ghost"]}]}
    created = await emu.create_object(BGQ, queue(spec=spec))
    ready = await eventually(lambda: conditions(kopf_operator).get("Ready"), what="a Ready condition")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert "ghost" in ready["message"]
    first = kopf_operator.reconciles(created["metadata"]["uid"])
    await asyncio.sleep(2.5)
    assert kopf_operator.reconciles(created["metadata"]["uid"]) == first


POOLS = [
    {"name": "content", "queues": ["content_generation", "high_priority"], "concurrency": 2},
    {"name": "monitoring", "queues": ["monitoring", "default", "validation", "export"], "concurrency": 1},
]


def expected_children(name: str = "demo", spec: dict[str, Any] | None = None) -> set[tuple[str, str]]:
    from bookgen_operator.core.resources import desired_objects
    from bookgen_operator.core.spec import parse_queue

    parsed = parse_queue({**queue(name, spec), "metadata": {"name": name, "namespace": NS, "uid": "x"}})
    return {(o["kind"], o["metadata"]["name"]) for o in desired_objects(parsed)} | {
        ("Secret", f"{name}-redis"), ("Secret", f"{name}-flower-auth")}


RESOURCE_OF = {"Service": "v1/services", "Secret": "v1/secrets", "Deployment": DEPLOY, "StatefulSet": STS,
               "PodDisruptionBudget": "policy/v1/poddisruptionbudgets",
               "NetworkPolicy": "networking.k8s.io/v1/networkpolicies",
               "PersistentVolumeClaim": "v1/persistentvolumeclaims",
               "ServiceMonitor": "monitoring.coreos.com/v1/servicemonitors",
               "PrometheusRule": "monitoring.coreos.com/v1/prometheusrules"}


def existing_children(op: RunningOperator) -> dict[tuple[str, str], dict[str, Any]]:
    found = {}
    for kind, resource in RESOURCE_OF.items():
        if kind in ("ServiceMonitor", "PrometheusRule") and not any(r.plural == resource.rsplit("/", 1)[1]
                                                                    for r in op.emulator.resources):
            continue
        for obj in op.emulator.objects_of(resource, NS):
            found[(kind, obj["metadata"]["name"])] = obj
    return found


async def make_ready(op: RunningOperator) -> None:
    """Play the kubelet and controllers: every workload reports its pods ready."""
    for resource in (DEPLOY, STS):
        for obj in op.emulator.objects_of(resource, NS):
            replicas = obj["spec"].get("replicas", 1)
            await op.emulator.patch_object(resource, NS, obj["metadata"]["name"],
                                           {"status": {"replicas": replicas, "readyReplicas": replicas}},
                                           subresource="status")


async def test_new_queue_gets_every_child_and_becomes_ready_then_makes_no_writes(
    kopf_operator: RunningOperator,
) -> None:
    emu = kopf_operator.emulator
    created = await emu.create_object(BGQ, queue())
    uid = created["metadata"]["uid"]
    wanted = expected_children()
    await eventually(lambda: wanted <= existing_children(kopf_operator).keys(), what="every child")
    children = existing_children(kopf_operator)
    assert set(children) == wanted, "no unexpected children"
    for (kind, _name), obj in children.items():
        assert obj["metadata"]["labels"]["app.kubernetes.io/instance"] == "demo"
        if kind == "PersistentVolumeClaim":  # the books' claim is made, never owned: it outlives the queue
            assert not obj["metadata"].get("ownerReferences")
            continue
        (ref,) = obj["metadata"]["ownerReferences"]
        assert ref["uid"] == uid and ref["controller"] is True
    ready = await eventually(lambda: conditions(kopf_operator).get("Ready"), what="a Ready condition")
    assert ready["status"] == "False"

    await make_ready(kopf_operator)
    await eventually(lambda: conditions(kopf_operator).get("Ready", {}).get("status") == "True", what="Ready=True")
    conds = conditions(kopf_operator)
    assert all(conds[t]["status"] == "True" for t in ("RedisReady", "WorkersReady", "FlowerReady"))
    status = emu.get_object(BGQ, NS, "demo")["status"]
    assert status["observedGeneration"] == 1 and status["workers"] == 4
    assert {"replicas": 1, "readyReplicas": 1}.items() <= status["pools"]["content"].items()
    events = [e for e in emu.objects_of("v1/events", NS) if e["involvedObject"]["name"] == "demo"]
    assert {"Created", "SecretsGenerated"} <= {e["reason"] for e in events}
    assert not any("password" in json.dumps(e).lower() and "data" in e for e in events)

    async with httpx.AsyncClient() as client:
        assert (await client.get(kopf_operator.liveness_url)).status_code == 200

    # Settled: further reconciles (timer, at least two) must not write anything at all. kopf records
    # the end of its create handler in an annotation (its own single write) first.
    await eventually(lambda: "kopf.zalando.org/last-handled-configuration" in
                     emu.get_object(BGQ, NS, "demo")["metadata"].get("annotations", {}), what="kopf's handler done")
    settled = kopf_operator.reconciles(uid)
    await eventually(lambda: kopf_operator.reconciles(uid) > settled, what="one reconcile after Ready")
    mark, runs = len(emu.calls), kopf_operator.reconciles(uid)
    await eventually(lambda: kopf_operator.reconciles(uid) >= runs + 2, what="two more reconciles")
    assert emu.writes(mark) == [], [c for c in emu.writes(mark)]


async def test_deleted_or_edited_children_are_restored_and_spec_changes_roll_out(
    kopf_operator: RunningOperator,
) -> None:
    emu = kopf_operator.emulator
    await emu.create_object(BGQ, queue(spec={"pools": POOLS}))
    name = "demo-worker-content"
    first = await eventually(lambda: emu.get_object(DEPLOY, NS, name), what="the content pool")

    await emu.delete_object(DEPLOY, NS, name)
    again = await eventually(lambda: emu.get_object(DEPLOY, NS, name), what="the deleted Deployment back")
    assert again["metadata"]["uid"] != first["metadata"]["uid"]

    container = again["spec"]["template"]["spec"]["containers"][0]
    tampered = {**container, "command": ["sleep", "infinity"]}
    await emu.patch_object(DEPLOY, NS, name, {"spec": {"template": {"spec": {"containers": [tampered]}}}})

    def command() -> list[str]:
        return emu.get_object(DEPLOY, NS, name)["spec"]["template"]["spec"]["containers"][0]["command"]

    await eventually(lambda: command()[0] == "celery", what="the hand edit reverted")

    # The autoscaler owns replicas: reconcile must leave a scaled Deployment alone.
    await emu.patch_object(DEPLOY, NS, name, {"spec": {"replicas": 5}})
    uid = emu.get_object(BGQ, NS, "demo")["metadata"]["uid"]
    runs = kopf_operator.reconciles(uid)
    await eventually(lambda: kopf_operator.reconciles(uid) >= runs + 2, what="two more reconciles")
    assert emu.get_object(DEPLOY, NS, name)["spec"]["replicas"] == 5

    changed = [{**POOLS[0], "concurrency": 4}, POOLS[1]]
    await emu.patch_object(BGQ, NS, "demo", {"spec": {"pools": changed}})
    await eventually(lambda: command()[command().index("-c") + 1] == "4", what="concurrency 4 rolled out")
    assert emu.get_object(DEPLOY, NS, name)["spec"]["replicas"] == 5
    await eventually(lambda: emu.get_object(BGQ, NS, "demo")["status"].get("observedGeneration") == 2,
                     what="observedGeneration 2")


async def test_hand_edits_of_every_kind_of_child_are_reverted(kopf_operator: RunningOperator) -> None:
    emu = kopf_operator.emulator
    await emu.create_object(BGQ, queue())
    wanted = expected_children()
    await eventually(lambda: wanted <= existing_children(kopf_operator).keys(), what="every child")
    label = "app.kubernetes.io/part-of"
    for kind, name in wanted:
        if kind != "Secret":  # Secrets are created once and never patched: their values are the user's now
            await emu.patch_object(RESOURCE_OF[kind], NS, name, {"metadata": {"labels": {label: "tampered"}}})

    def tampered() -> list[tuple[str, str]]:
        return [key for key, obj in existing_children(kopf_operator).items()
                if obj["metadata"]["labels"].get(label) == "tampered"]

    await eventually(lambda: not tampered(), what="every tampered label restored")


async def test_deleting_the_queue_removes_every_child_but_the_books(kopf_operator: RunningOperator) -> None:
    emu = kopf_operator.emulator
    await emu.create_object(BGQ, queue())
    wanted = expected_children()
    await eventually(lambda: wanted <= existing_children(kopf_operator).keys(), what="every child")
    claim = existing_children(kopf_operator)[("PersistentVolumeClaim", "demo-exports")]
    assert not claim["metadata"].get("ownerReferences"), "the exports claim is made, never owned"
    await emu.delete_object(BGQ, NS, "demo")
    await eventually(lambda: emu.get_object(BGQ, NS, "demo") is None, what="the queue gone (finalizer released)")
    # The exports claim holds the finished books: it outlives the queue, as the Redis data claim does.
    await eventually(lambda: set(existing_children(kopf_operator)) == {("PersistentVolumeClaim", "demo-exports")},
                     what="children garbage-collected but the exports claim")


@pytest.mark.prometheus_operator
async def test_monitoring_objects_appear_only_with_the_prometheus_operator(kopf_operator: RunningOperator) -> None:
    emu = kopf_operator.emulator
    await emu.create_object(BGQ, queue())
    monitoring = {("ServiceMonitor", "demo"), ("PrometheusRule", "demo")}
    await eventually(lambda: monitoring <= existing_children(kopf_operator).keys(),
                     what="ServiceMonitor and PrometheusRule")
    for kind, name in monitoring:  # they are repaired like every other child
        await emu.patch_object(RESOURCE_OF[kind], NS, name, {"metadata": {"labels": {"app.kubernetes.io/name": "x"}}})
    await eventually(lambda: all(existing_children(kopf_operator)[key]["metadata"]["labels"]["app.kubernetes.io/name"]
                                 == "bookgen" for key in monitoring), what="monitoring objects repaired")


async def backlog_on_external_redis(op: RunningOperator, redis_server: Any, redis_client: Any) -> dict[str, Any]:
    """12 content tasks waiting in a real Redis, and the spec of a queue that uses it (external mode, the
    redis source polled every 0.2 s, 2 tasks per slot: the content pool wants 3 replicas)."""
    password = base64.b64encode(redis_server.password.encode()).decode()
    await op.emulator.create_object("v1/secrets", {"metadata": {"name": "redis-pass", "namespace": NS},
                                                   "data": {"password": password}})
    redis_client.lpush("content_generation", *[f"task-{i}" for i in range(12)])
    return {
        "redis": {"mode": "external", "url": f"redis://127.0.0.1:{redis_server.port}/0",
                  "passwordSecretRef": {"name": "redis-pass", "key": "password"}},
        "autoscaling": {"source": "redis", "pollIntervalSeconds": 0.2, "targetPerSlot": 2},
        "pools": [{**POOLS[0], "maxReplicas": 4}, POOLS[1]],
    }


@pytest.mark.autoscaler
async def test_the_autoscaler_daemon_scales_a_pool_from_real_queue_depth(
    kopf_operator: RunningOperator, redis_server: Any, redis_client: Any,
) -> None:
    """The daemon runs the autoscaler per queue: real Redis (external mode), Deployments in the emulator."""
    emu = kopf_operator.emulator
    spec = await backlog_on_external_redis(kopf_operator, redis_server, redis_client)
    await emu.create_object(BGQ, queue(spec=spec))
    name = "demo-worker-content"
    await eventually(lambda: (emu.get_object(DEPLOY, NS, name) or {}).get("spec", {}).get("replicas") == 3,
                     what="content scaled to ceil(12 / (2 per slot x 2 slots)) = 3")
    await eventually(lambda: conditions(kopf_operator).get("Autoscaling", {}).get("reason") == "Active",
                     what="Autoscaling=Active")
    pools = await eventually(lambda: emu.get_object(BGQ, NS, "demo")["status"].get("pools", {}).get("content", {})
                             .get("pending") == 12 and emu.get_object(BGQ, NS, "demo")["status"]["pools"],
                             what="the content pool's pending count in status")
    assert pools["content"]["desiredReplicas"] == 3


@pytest.mark.autoscaler
async def test_a_paused_queue_holds_its_pools_and_resumes_when_the_annotation_goes(
    kopf_operator: RunningOperator, redis_server: Any, redis_client: Any,
) -> None:
    """bookgen.io/paused: the daemon's autoscaler observes (status shows the backlog) but never scales,
    the Autoscaling condition says Paused; removing the annotation scales at the next polls."""
    emu = kopf_operator.emulator
    spec = await backlog_on_external_redis(kopf_operator, redis_server, redis_client)
    body = queue(spec=spec)
    body["metadata"]["annotations"] = {"bookgen.io/paused": "true"}
    await emu.create_object(BGQ, body)
    name = "demo-worker-content"
    await eventually(lambda: conditions(kopf_operator).get("Autoscaling", {}).get("reason") == "Paused",
                     what="Autoscaling=Paused")
    await eventually(lambda: "paused at the current replicas" in str(
        emu.get_object(BGQ, NS, "demo")["status"].get("pools", {}).get("content", {}).get("reason")),
        what="the content pool's status saying it is paused")
    # Ten polls with a backlog that asks for 3 replicas: the count must stay where it was.
    for _ in range(10):
        assert emu.get_object(DEPLOY, NS, name)["spec"]["replicas"] == 1
        await asyncio.sleep(0.2)
    await emu.patch_object(BGQ, NS, "demo", {"metadata": {"annotations": {"bookgen.io/paused": None}}})
    await eventually(lambda: (emu.get_object(DEPLOY, NS, name) or {}).get("spec", {}).get("replicas") == 3,
                     what="content scaled to 3 once the pause was lifted")
    await eventually(lambda: conditions(kopf_operator).get("Autoscaling", {}).get("reason") == "Active",
                     what="Autoscaling=Active again")


async def test_monitoring_always_without_the_prometheus_operator_warns_once(kopf_operator: RunningOperator) -> None:
    emu = kopf_operator.emulator
    created = await emu.create_object(BGQ, queue(spec={"metrics": {"serviceMonitor": {"enabled": "always"}}}))
    await eventually(lambda: expected_children() <= existing_children(kopf_operator).keys(), what="every child")
    uid, runs = created["metadata"]["uid"], kopf_operator.reconciles(created["metadata"]["uid"])
    await eventually(lambda: kopf_operator.reconciles(uid) >= runs + 2, what="two more reconciles")
    warnings = [e for e in emu.objects_of("v1/events", NS) if e["reason"] == "PrometheusOperatorMissing"]
    assert len(warnings) == 1 and "ServiceMonitor demo" in warnings[0]["message"]


def _observed() -> list[dict[str, Any]]:
    return [{"verb": v, "group": g, "resource": r, "subresource": s or None} for v, g, r, s in sorted(OBSERVED_CALLS)]


def test_api_calls_file_lists_every_call_the_operator_made(request: pytest.FixtureRequest) -> None:
    """operator/api-calls.json = the (verb, group, resource, subresource) of every call above; the chart's
    RBAC is checked against it. Regenerate with BOOKGEN_UPDATE_API_CALLS=1."""
    ran = {item.name for item in request.session.items if item.module is request.module}
    modules = {Path(str(item.fspath)).name for item in request.session.items}
    whole = len(ran) >= len([n for n in dir(request.module) if n.startswith("test_")])
    if not whole or not modules >= CONTRIBUTORS or not OBSERVED_CALLS:
        pytest.skip(f"needs every test of {', '.join(sorted(CONTRIBUTORS))} in this session")
    observed = _observed()
    if os.environ.get("BOOKGEN_UPDATE_API_CALLS") == "1":
        API_CALLS_FILE.write_text(json.dumps(observed, indent=2) + "\n")
    recorded = json.loads(API_CALLS_FILE.read_text()) if API_CALLS_FILE.exists() else None
    assert recorded == observed, (
        "operator/api-calls.json differs from the API calls the operator made in these tests; regenerate it "
        "with BOOKGEN_UPDATE_API_CALLS=1 .venv/bin/python -m pytest tests/operator/test_e2e.py and review the diff"
    )
