"""End to end on the emulator (stores objects like kube-apiserver): the operator settles with zero
writes, prunes what is no longer desired (and nothing else), and waits out API throttling."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.operator.conftest import BGQ, RunningOperator, eventually
from tests.operator.test_e2e import DEPLOY, NS, RESOURCE_OF, STS, conditions, existing_children, make_ready, queue

ROOT = Path(__file__).resolve().parents[2]
CHILD_RESOURCES = {"deployments", "statefulsets", "services", "poddisruptionbudgets", "networkpolicies",
                   "servicemonitors", "prometheusrules"}


def child_writes(op: RunningOperator, since: int) -> list[tuple[str, str, str | None]]:
    return [(c.verb, c.resource, c.name) for c in op.emulator.writes(since) if c.resource in CHILD_RESOURCES]


async def settled_mark(op: RunningOperator, uid: str, name: str = "demo") -> int:
    """Index into the call log after which the operator has had two full reconciles (and kopf has
    finished its create/update handler: it records that in an annotation, one write of its own)."""
    await eventually(lambda: "kopf.zalando.org/last-handled-configuration" in
                     (op.emulator.get_object(BGQ, NS, name) or {}).get("metadata", {}).get("annotations", {}),
                     what="kopf's handler to finish")
    runs = op.reconciles(uid)
    await eventually(lambda: op.reconciles(uid) >= runs + 2, what="two reconciles")
    return len(op.emulator.calls)


@pytest.mark.prometheus_operator
async def test_the_full_example_settles_with_no_writes_and_one_write_repairs_a_hand_edit(
    kopf_operator: RunningOperator,
) -> None:
    emu = kopf_operator.emulator
    body = yaml.safe_load((ROOT / "examples" / "bookgenqueue-full.yaml").read_text())
    body["metadata"]["namespace"] = NS
    spec = body["spec"]
    ref = spec["redis"]["passwordSecretRef"]
    await emu.create_object("v1/secrets", {"metadata": {"name": ref["name"], "namespace": NS},
                                           "stringData": {ref["key"]: "p"}})
    await emu.create_object("v1/secrets", {"metadata": {"name": spec["flower"]["authSecretRef"]["name"],
                                                        "namespace": NS},
                                           "stringData": {"username": "u", "password": "p"}})
    s3 = spec["exports"]["s3"]["credentialsSecretRef"]
    await emu.create_object("v1/secrets", {"metadata": {"name": s3["name"], "namespace": NS},
                                           "stringData": {s3["accessKeyIdKey"]: "k", s3["secretAccessKeyKey"]: "s"}})
    created = await emu.create_object(BGQ, body)
    uid = created["metadata"]["uid"]
    await eventually(lambda: emu.objects_of(DEPLOY, NS), timeout=60, what="the workers")
    await eventually(lambda: conditions(kopf_operator, "bookgen-full").get("Ready"), what="a Ready condition")
    await make_ready(kopf_operator)
    # Timer reconciles read the children from the watches: settled means the watches have delivered
    # the ready workloads and the status says so, not merely that two reconciles ran.
    await eventually(lambda: conditions(kopf_operator, "bookgen-full").get("Ready", {}).get("status") == "True",
                     what="Ready=True")
    mark = await settled_mark(kopf_operator, uid, "bookgen-full")
    await settled_mark(kopf_operator, uid, "bookgen-full")
    assert emu.writes(mark) == [], [(c.verb, c.resource, c.name, c.body) for c in emu.writes(mark)]

    # A hand edit of a probe: repaired with exactly one write, then quiet again.
    name = "bookgen-full-worker-validation"
    deployment = emu.get_object(DEPLOY, NS, name)
    containers = copy.deepcopy(deployment["spec"]["template"]["spec"]["containers"])
    containers[0]["livenessProbe"]["initialDelaySeconds"] = 99
    mark = len(emu.calls)
    await emu.patch_object(DEPLOY, NS, name, {"spec": {"template": {"spec": {"containers": containers}}}})
    await eventually(lambda: "initialDelaySeconds" not in emu.get_object(DEPLOY, NS, name)["spec"]["template"]
                     ["spec"]["containers"][0]["livenessProbe"], what="the probe repaired")
    await settled_mark(kopf_operator, uid, "bookgen-full")
    assert child_writes(kopf_operator, mark) == [("patch", "deployments", name)]


@pytest.mark.prometheus_operator
async def test_removed_parts_are_pruned_and_nothing_else_is_touched(kopf_operator: RunningOperator) -> None:
    emu = kopf_operator.emulator
    created = await emu.create_object(BGQ, queue())
    uid = created["metadata"]["uid"]
    await eventually(lambda: ("Deployment", "demo-flower") in existing_children(kopf_operator), what="children")
    await eventually(lambda: ("PrometheusRule", "demo") in existing_children(kopf_operator), what="monitoring")
    # What must survive every removal: the Redis data claim, and a namesake with our labels owned by another.
    await emu.create_object("v1/persistentvolumeclaims", {
        "metadata": {"name": "data-demo-redis-0", "namespace": NS,
                     "labels": {"app.kubernetes.io/instance": "demo",
                                "app.kubernetes.io/managed-by": "bookgen-operator"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    stranger = copy.deepcopy(emu.get_object(DEPLOY, NS, "demo-beat"))
    stranger["metadata"] = {"name": "demo-worker-legacy", "namespace": NS, "labels": stranger["metadata"]["labels"],
                            "ownerReferences": [{"apiVersion": "bookgen.io/v1alpha1", "kind": "BookGenQueue",
                                                 "name": "other", "uid": "another-uid", "controller": True}]}
    await emu.create_object(DEPLOY, stranger)
    await settled_mark(kopf_operator, uid)
    pools = [p for p in default_pools() if p["name"] != "export"]

    async def change(spec: dict[str, Any], gone: set[tuple[str, str]]) -> None:
        mark = len(emu.calls)
        await emu.patch_object(BGQ, NS, "demo", {"spec": spec})
        await eventually(lambda: not gone & existing_children(kopf_operator).keys(), what=f"{gone} deleted")
        await settled_mark(kopf_operator, uid)
        deleted = {(RESOURCE_KIND[r], n) for v, r, n in child_writes(kopf_operator, mark) if v == "delete"}
        assert deleted == gone

    await change({"pools": pools},
                 {("Deployment", "demo-worker-export"), ("PodDisruptionBudget", "demo-worker-export")})
    await eventually(lambda: "export" not in emu.get_object(BGQ, NS, "demo")["status"].get("pools", {}),
                     what="the removed pool gone from status")
    await change({"flower": {"enabled": False}, "beat": {"enabled": False}},
                 {("Deployment", "demo-flower"), ("Service", "demo-flower"), ("Deployment", "demo-beat")})
    await change({"metrics": {"serviceMonitor": {"enabled": "never"}, "prometheusRule": {"enabled": "never"}}},
                 {("ServiceMonitor", "demo"), ("PrometheusRule", "demo")})
    await emu.create_object("v1/secrets", {"metadata": {"name": "ext", "namespace": NS},
                                           "stringData": {"password": "p"}})
    await change({"redis": {"mode": "external", "url": "redis://redis.example:6379/0",
                            "passwordSecretRef": {"name": "ext", "key": "password"}}},
                 {("StatefulSet", "demo-redis"), ("Service", "demo-redis"), ("Service", "demo-redis-headless"),
                  ("NetworkPolicy", "demo-redis")})
    assert emu.get_object("v1/persistentvolumeclaims", NS, "data-demo-redis-0") is not None
    assert emu.get_object(DEPLOY, NS, "demo-worker-legacy") is not None
    assert emu.get_object(STS, NS, "demo-redis") is None


RESOURCE_KIND = {r.rsplit("/", 1)[1]: k for k, r in RESOURCE_OF.items()}


def default_pools() -> list[dict[str, Any]]:
    from bookgen_operator.core.spec.defaults import DEFAULT_POOLS

    return copy.deepcopy(DEFAULT_POOLS)


async def test_throttling_is_waited_out_and_no_condition_turns_false(kopf_operator: RunningOperator) -> None:
    emu = kopf_operator.emulator
    created = await emu.create_object(BGQ, queue())
    uid = created["metadata"]["uid"]
    await eventually(lambda: conditions(kopf_operator).get("Ready"), what="a Ready condition")
    await make_ready(kopf_operator)
    await eventually(lambda: conditions(kopf_operator).get("Ready", {}).get("status") == "True", what="Ready=True")
    runs = kopf_operator.reconciles(uid)
    emu.throttle(4, retry_after=2)  # API Priority and Fairness rejecting everything for a while
    # A settled queue's timer reconcile reads its children from the watch cache and sends nothing: a
    # deleted Service makes the next one read and recreate it, into the throttle.
    await emu.delete_object(RESOURCE_OF["Service"], NS, "demo-redis")
    await eventually(lambda: emu.throttled > 0, what="a throttled request")
    await asyncio.sleep(0)  # no synchronisation here: the checks below poll with deadlines
    await eventually(lambda: kopf_operator.reconciles(uid) >= runs + 3, timeout=30, what="reconciles after throttling")
    conds = conditions(kopf_operator)
    assert all(c["status"] == "True" for t, c in conds.items() if t != "Autoscaling"), conds
    assert emu.get_object(RESOURCE_OF["Service"], NS, "demo-redis"), "the Service restored after the throttle"
    # A new child after the throttle still rolls out (the operator did not give up or crash).
    await emu.delete_object(DEPLOY, NS, "demo-worker-export")
    await eventually(lambda: emu.get_object(DEPLOY, NS, "demo-worker-export"), what="the Deployment restored")


async def test_child_watches_are_label_selected_by_the_server_and_deleted_queues_leave_no_state(
    kopf_operator: RunningOperator,
) -> None:
    emu = kopf_operator.emulator
    for i in range(50):  # unrelated Deployments elsewhere: the server must not send them at all
        await emu.create_object(DEPLOY, {"metadata": {"name": f"other-{i}", "namespace": "elsewhere",
                                                      "labels": {"app": "other"}},
                                         "spec": {"template": {"spec": {"containers": [{"name": "c",
                                                                                       "image": "x:1"}]}}}})
    created = await emu.create_object(BGQ, queue())
    uid = created["metadata"]["uid"]
    await eventually(lambda: emu.get_object(DEPLOY, NS, "demo-worker-content"), what="the workers")
    watches = [c for c in emu.calls if c.verb in ("watch", "list") and c.resource in ("deployments", "statefulsets")
               and c.namespace is None]
    assert watches, "kopf watches the children cluster-wide"
    selector = "app.kubernetes.io/managed-by=bookgen-operator"
    assert all(selector in c.params.get("labelSelector", "") for c in watches), [c.params for c in watches]
    await eventually(lambda: uid in kopf_operator.context.states, what="per-queue state")
    await emu.delete_object(BGQ, NS, "demo")
    await eventually(lambda: emu.get_object(BGQ, NS, "demo") is None, what="the queue gone")
    await eventually(lambda: uid not in kopf_operator.context.states and kopf_operator.reconciles(uid) == 0,
                     what="the queue's in-memory state and counters dropped")
