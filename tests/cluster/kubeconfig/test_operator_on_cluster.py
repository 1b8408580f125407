"""The operator process against a Kubernetes API reached through a kubeconfig (issue 13): it settles
with zero writes, repairs a hand edit with one write, prunes removed parts and nothing else, and a
standby replica takes over within 15 s of the leader's death. On the real control plane (conftest.py)."""

from __future__ import annotations

import asyncio
import copy
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from bookgen_operator.kube import RESOURCES

from tests.cluster.kubeconfig.conftest import ADMIN_USER, Cluster, Operator
from tests.operator.conftest import eventually

BGQ = RESOURCES[("bookgen.io/v1alpha1", "BookGenQueue")]
DEPLOY = RESOURCES[("apps/v1", "Deployment")]
PDB = RESOURCES[("policy/v1", "PodDisruptionBudget")]
SERVICE = RESOURCES[("v1", "Service")]
LEASE = RESOURCES[("coordination.k8s.io/v1", "Lease")]
#: How long a settled queue is watched for writes (the acceptance asks 120 s on the real control plane).
SETTLE_SECONDS = float(os.environ.get("BOOKGEN_CLUSTER_SETTLE_SECONDS", "120"))
FULL_EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "bookgenqueue-full.yaml"


def queue(cluster: Cluster, name: str = "demo", spec: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"apiVersion": "bookgen.io/v1alpha1", "kind": "BookGenQueue",
            "metadata": {"name": name, "namespace": cluster.namespace}, "spec": spec or {}}


async def settled(op: Operator, ticks: int = 3, timeout: float = 90) -> float:
    """Wait until the operator's write count stays put over `ticks` reconciles; returns the count."""
    deadline = time.monotonic() + timeout
    while True:
        writes, runs = await op.writes(), await op.reconciles()
        target = runs + ticks
        await eventually(lambda target=target: _more(op, target), timeout=60, what=f"{ticks} reconciles")
        if await op.writes() == writes:
            return writes
        assert time.monotonic() < deadline, f"the operator never settled: {await op.writes()} writes and counting"


async def _more(op: Operator, runs: float) -> bool:
    return await op.reconciles() >= runs


async def test_settles_with_zero_writes_and_repairs_a_hand_edit_with_one(cluster: Cluster) -> None:
    op = await cluster.start_operator()
    ns = cluster.namespace
    full = yaml.safe_load(FULL_EXAMPLE.read_text())
    full["metadata"]["namespace"] = ns
    await cluster.kube.create(BGQ, ns, queue(cluster))  # the default spec
    secret = RESOURCES[("v1", "Secret")]
    for name, data in (("bookgen-full-redis-password", {"redis-password": "first"}),
                       ("bookgen-full-flower-login", {"username": "admin", "password": "x"})):
        await cluster.kube.create(secret, ns, {"apiVersion": "v1", "kind": "Secret",
                                               "metadata": {"name": name}, "stringData": data})
    await cluster.kube.create(BGQ, ns, full)  # every field set, the Secrets it names made by the user
    await eventually(lambda: cluster.kube.get(DEPLOY, ns, "demo-worker-content"), timeout=60, what="the workers")
    await eventually(lambda: cluster.kube.get(DEPLOY, ns, "bookgen-full-worker-content"), timeout=60,
                     what="the full example's workers")
    before = await settled(op)
    # From here the test writes nothing until the window ends: every write by the admin user is the operator's.
    mark = cluster.audit.mark()
    started = time.monotonic()
    while time.monotonic() - started < SETTLE_SECONDS:  # the window itself: polled, not slept through
        assert await op.writes() == before, "a settled queue was written to"
        await asyncio.sleep(1)
    assert await op.writes() == before
    writes = cluster.audit.settled_writes(ADMIN_USER, since=mark)
    assert writes == [], [(w.verb, w.resource, w.subresource, w.name) for w in writes]
    assert await op.reconciles() >= SETTLE_SECONDS / 2 / 2, "timer reconciles ran during the window"

    deployment = await cluster.kube.get(DEPLOY, ns, "demo-worker-validation")
    containers = copy.deepcopy(deployment["spec"]["template"]["spec"]["containers"])
    containers[0]["livenessProbe"]["initialDelaySeconds"] = 99
    cluster.audit.settled_writes(ADMIN_USER, since=mark)
    repair_mark = cluster.audit.mark()
    await cluster.kube.patch(DEPLOY, ns, "demo-worker-validation",
                             {"spec": {"template": {"spec": {"containers": containers}}}})

    async def repaired() -> bool:
        obj = await cluster.kube.get(DEPLOY, ns, "demo-worker-validation")
        return "initialDelaySeconds" not in obj["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]

    await eventually(repaired, timeout=30, what="the hand edit repaired")
    await settled(op)
    # The hand edit (the test's own patch, first) and one repair; the rollout the repair starts may change
    # the queue's status (the operator's writes, and kopf's), which are not writes to children.
    child_writes = [(w.verb, w.resource, w.name) for w in cluster.audit.settled_writes(ADMIN_USER, since=repair_mark)
                    if w.namespace == ns and w.resource not in ("bookgenqueues", "events")]
    assert child_writes == [("patch", "deployments", "demo-worker-validation")] * 2, child_writes


async def test_removing_a_pool_deletes_its_deployment_and_pdb_and_nothing_else(cluster: Cluster) -> None:
    from bookgen_operator.spec_defaults import DEFAULT_POOLS

    op = await cluster.start_operator()
    ns = cluster.namespace
    await cluster.kube.create(BGQ, ns, queue(cluster))
    await eventually(lambda: cluster.kube.get(PDB, ns, "demo-worker-export"), timeout=60, what="the export pool")
    await settled(op)
    names = {kind: {o["metadata"]["name"] for o in await cluster.kube.list(res, ns)}
             for kind, res in (("Deployment", DEPLOY), ("PodDisruptionBudget", PDB), ("Service", SERVICE))}
    pools = [p for p in copy.deepcopy(DEFAULT_POOLS) if p["name"] != "export"]
    await cluster.kube.patch(BGQ, ns, "demo", {"spec": {"pools": pools}})

    async def gone() -> bool:
        return (await cluster.kube.get(DEPLOY, ns, "demo-worker-export") is None
                and await cluster.kube.get(PDB, ns, "demo-worker-export") is None)

    await eventually(gone, timeout=30, what="the removed pool's Deployment and PDB deleted")
    await settled(op)
    left = {kind: {o["metadata"]["name"] for o in await cluster.kube.list(res, ns)}
            for kind, res in (("Deployment", DEPLOY), ("PodDisruptionBudget", PDB), ("Service", SERVICE))}
    assert left["Deployment"] == names["Deployment"] - {"demo-worker-export"}
    assert left["PodDisruptionBudget"] == names["PodDisruptionBudget"] - {"demo-worker-export"}
    assert left["Service"] == names["Service"]


async def test_a_standby_replica_takes_over_within_15s_of_the_leaders_death(cluster: Cluster) -> None:
    ns = cluster.namespace

    async def holder() -> str | None:
        lease = await cluster.kube.get(LEASE, ns, "bookgen-operator")
        return ((lease or {}).get("spec") or {}).get("holderIdentity")

    a = await cluster.start_operator("op-a", leader_elect=True)
    await eventually(lambda: _is(holder, "op-a"), timeout=60, what="op-a leading")
    b = await cluster.start_operator("op-b", leader_elect=True)
    await cluster.kube.create(BGQ, ns, queue(cluster))
    await eventually(lambda: cluster.kube.get(DEPLOY, ns, "demo-worker-content"), timeout=60, what="the workers")
    assert await b.writes() == -1.0, "the standby serves no metrics: it has not started the operator at all"

    a.process.send_signal(signal.SIGKILL)
    await a.process.wait()
    await cluster.kube.delete(DEPLOY, ns, "demo-worker-content")
    await eventually(lambda: cluster.kube.get(DEPLOY, ns, "demo-worker-content"), timeout=15,
                     what="the standby to act within 15 s of the leader's death")
    assert await holder() == "op-b"


async def _is(get: Any, value: str) -> bool:
    return await get() == value


async def test_pull_secrets_registry_and_digest_reach_every_child(cluster: Cluster) -> None:
    """Acceptance 7: every child pod spec gets the pull Secrets and the registry, the digest pins the image,
    and the real controllers make pods from them."""
    ns = cluster.namespace
    await cluster.start_operator(env={"BOOKGEN_IMAGE_REGISTRY": "registry.internal:5000",
                                      "BOOKGEN_IMAGE_PULL_SECRETS": "corp", "BOOKGEN_MONITOR_LABELS": "release=kps"})
    digest = "sha256:" + "0" * 64
    await cluster.kube.create(BGQ, ns, queue(cluster, spec={"image": {"digest": digest},
                                                            "imagePullSecrets": [{"name": "team"}]}))
    sts = RESOURCES[("apps/v1", "StatefulSet")]
    await eventually(lambda: cluster.kube.get(DEPLOY, ns, "demo-flower"), timeout=60, what="every workload")
    workloads = [*await cluster.kube.list(DEPLOY, ns), *await cluster.kube.list(sts, ns)]
    assert len(workloads) == 7  # Redis, four pools, beat, Flower
    for obj in workloads:
        pod = obj["spec"]["template"]["spec"]
        assert pod["imagePullSecrets"] == [{"name": "team"}, {"name": "corp"}], obj["metadata"]["name"]
        for container in pod["containers"]:
            assert container["image"].startswith("registry.internal:5000/"), container["image"]
            if "bookgen-queue" in container["image"]:
                assert container["image"].endswith("@" + digest)
    # The digest-pinned references are valid image names to the API server: the pods exist and run.
    pods = RESOURCES[("v1", "Pod")]

    async def running() -> bool:
        items = await cluster.kube.list(pods, ns)
        return len(items) >= 7 and all((p.get("status") or {}).get("phase") == "Running" for p in items)

    await eventually(running, timeout=90, what="the pods of every workload Running")


async def test_monitor_labels_reach_the_servicemonitor_and_prometheusrule(cluster: Cluster) -> None:
    """Acceptance 6, where the prometheus-operator CRDs are served (this control plane has none: no
    package we may use ships them, so here the test is skipped and says why)."""
    served = await cluster.kube._request("GET", "/apis")
    if "monitoring.coreos.com" not in {g.get("name") for g in served.get("groups") or []}:
        pytest.skip("the prometheus-operator CRDs are not installed in this control plane")
    ns = cluster.namespace
    await cluster.start_operator(env={"BOOKGEN_MONITOR_LABELS": "release=kps"})
    await cluster.kube.create(BGQ, ns, queue(cluster))
    for res in [RESOURCES[("monitoring.coreos.com/v1", kind)] for kind in ("ServiceMonitor", "PrometheusRule")]:
        obj = await eventually(lambda res=res: cluster.kube.get(res, ns, "demo"), timeout=60, what=res.plural)
        assert obj["metadata"]["labels"]["release"] == "kps"


async def test_ten_seconds_of_429_are_waited_out_and_no_condition_turns_false(cluster: Cluster) -> None:
    """Acceptance 8: a proxy in front of the API server answers 429 with Retry-After: 2 for 10 s."""
    from tests.support.redis_server import free_port
    from tests.support.throttling_proxy import ThrottlingProxy

    proxy = ThrottlingProxy(cluster.kube)
    url = await proxy.start(free_port())
    try:
        op = await cluster.start_operator(env={"BOOKGEN_KUBE_SERVER": url})
        ns = cluster.namespace
        await cluster.kube.create(BGQ, ns, queue(cluster))
        await eventually(lambda: cluster.kube.get(DEPLOY, ns, "demo-flower"), timeout=60, what="every workload")
        await settled(op)

        async def conditions() -> dict[str, str]:
            obj = await cluster.kube.get(BGQ, ns, "demo")
            return {c["type"]: c["status"] for c in (obj.get("status") or {}).get("conditions") or []}

        before = await conditions()
        runs = await op.reconciles()
        proxy.throttle(10, retry_after=2)
        await eventually(lambda: proxy.throttled > 0, timeout=10, what="a throttled request")
        await eventually(lambda: _more(op, runs + 3), timeout=60, what="reconciles after the throttling")
        after = await conditions()
        assert all(after.get(t) == "True" for t, s in before.items() if s == "True"), (before, after)
        assert proxy.throttled > 0
        await cluster.kube.delete(DEPLOY, ns, "demo-worker-export")
        await eventually(lambda: cluster.kube.get(DEPLOY, ns, "demo-worker-export"), timeout=30,
                         what="the operator still repairing after the throttling")
        await op.stop()
    finally:
        await proxy.stop()
