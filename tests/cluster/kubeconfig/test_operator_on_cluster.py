"""The operator process against a Kubernetes API reached through a kubeconfig (issue 13): it settles
with zero writes, repairs a hand edit with one write, prunes removed parts and nothing else, and a
standby replica takes over within 15 s of the leader's death. On the real control plane (conftest.py)."""

from __future__ import annotations

import asyncio
import copy
import os
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from bookgen_operator.controller.client import RESOURCES, Resource

from tests.cluster.kubeconfig.conftest import ADMIN_USER, Cluster, Operator
from tests.operator.conftest import eventually

BGQ = RESOURCES[("bookgen.io/v1alpha1", "BookGenQueue")]
DEPLOY = RESOURCES[("apps/v1", "Deployment")]
PDB = RESOURCES[("policy/v1", "PodDisruptionBudget")]
SERVICE = RESOURCES[("v1", "Service")]
LEASE = RESOURCES[("coordination.k8s.io/v1", "Lease")]
PVC = Resource("", "v1", "persistentvolumeclaims")
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


async def _ready(cluster: Cluster, name: str) -> bool:
    obj = await cluster.kube.get(BGQ, cluster.namespace, name) or {}
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (obj.get("status") or {}).get("conditions") or [])


async def _more(op: Operator, runs: float) -> bool:
    return await op.reconciles() >= runs


def full_example_for_this_cluster(cluster: Cluster) -> dict[str, Any]:
    """The full example, adapted as a user adapts it to a cluster: the image from where this cluster
    has it (with its real digest, IfNotPresent: there is no registry to ask), the storage class it has,
    CPU requests a two-core node can schedule beside the other queue (as written they ask for
    1.35 cores, and the scheduler leaves the content pool Pending: "Insufficient cpu"), and a spread
    over zones a one-node cluster without zones can satisfy (as written: DoNotSchedule over at least
    two zones, and every pod stays Pending)."""
    full = yaml.safe_load(FULL_EXAMPLE.read_text())
    full["metadata"]["namespace"] = cluster.namespace
    ref = "ghcr.io/bookgen/bookgen-queue:0.1.0"
    full["spec"]["image"].update({"repository": ref.rsplit(":", 1)[0], "pullPolicy": "IfNotPresent",
                                  "digest": cluster.image_digest(ref)})
    full["spec"]["redis"]["persistence"]["storageClassName"] = "local-path"
    for owner in (*full["spec"]["pools"], full["spec"]["redis"]):
        requests = (owner.get("resources") or {}).get("requests") or {}
        if "cpu" in requests:
            requests["cpu"] = "10m"
    for spread in full["spec"]["podTemplate"]["spec"]["topologySpreadConstraints"]:
        spread.pop("minDomains", None)
        spread["whenUnsatisfiable"] = "ScheduleAnyway"
    return full


#: What the full example names and a user creates first, beside the Secrets: its PriorityClasses (cluster
#: scoped), the ServiceAccount of its pods and the Secret of the content pool's model key.
PRIORITY_CLASSES = ("bookgen-standard", "bookgen-interactive")


@pytest.fixture
async def full_example_prerequisites(cluster: Cluster) -> AsyncIterator[None]:
    classes = cluster.res("scheduling.k8s.io", "v1", "priorityclasses", namespaced=False)
    for name in PRIORITY_CLASSES:
        try:
            await cluster.kube.create(classes, None, {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                                                      "metadata": {"name": name}, "value": 100})
        except Exception as exc:  # left by an earlier run on a reused cluster
            if getattr(exc, "code", None) != 409:
                raise
    ns = cluster.namespace
    await cluster.kube.create(RESOURCES[("v1", "ServiceAccount")], ns, {
        "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "bookgen-full"}})
    await cluster.kube.create(RESOURCES[("v1", "Secret")], ns, {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "bookgen-llm"}, "stringData": {"api-key": "sk-x"}})
    yield
    for name in PRIORITY_CLASSES:
        await cluster.kube.delete(classes, None, name)


@pytest.mark.usefixtures("full_example_prerequisites")
async def test_settles_with_zero_writes_and_repairs_a_hand_edit_with_one(cluster: Cluster) -> None:
    op = await cluster.start_operator()
    ns = cluster.namespace
    full = full_example_for_this_cluster(cluster)
    await cluster.kube.create(BGQ, ns, queue(cluster))  # the default spec
    secret = RESOURCES[("v1", "Secret")]
    for name, data in (("bookgen-full-redis-password", {"redis-password": "first"}),
                       ("bookgen-full-flower-login", {"username": "admin", "password": "x"}),
                       ("bookgen-full-s3", {"access-key": "id", "secret-key": "key"})):
        await cluster.kube.create(secret, ns, {"apiVersion": "v1", "kind": "Secret",
                                               "metadata": {"name": name}, "stringData": data})
    await cluster.kube.create(BGQ, ns, full)  # every field set, the Secrets it names made by the user
    await eventually(lambda: cluster.kube.get(DEPLOY, ns, "demo-worker-content"), timeout=60, what="the workers")
    await eventually(lambda: cluster.kube.get(DEPLOY, ns, "bookgen-full-worker-content"), timeout=60,
                     what="the full example's workers")
    # The kubelet makes the pods ready a little later; each change of readiness is a status write.
    # Settled means the operator has seen them ready (timer reconciles read the watches' view), not
    # merely that a few reconciles ran: otherwise a late status write lands in the window.
    for name in ("demo", "bookgen-full"):
        await eventually(lambda name=name: _ready(cluster, name), timeout=90, what=f"{name} Ready=True")
    before = await settled(op)
    # From here the test writes nothing until the window ends: every write by the admin user is the operator's.
    mark = cluster.audit.mark()
    started = time.monotonic()
    while time.monotonic() - started < SETTLE_SECONDS:  # the window itself: polled, not slept through
        if await op.writes() != before:
            late = [(w.verb, w.resource, w.subresource, w.name)
                    for w in cluster.audit.settled_writes(ADMIN_USER, since=mark)]
            raise AssertionError(f"a settled queue was written to: {late}")
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


#: Every kind a queue's children come in (what the operator lists by its labels), by plural.
CHILD_KINDS = [RESOURCES[k] for k in (("apps/v1", "Deployment"), ("apps/v1", "StatefulSet"), ("v1", "Service"),
                                      ("policy/v1", "PodDisruptionBudget"), ("networking.k8s.io/v1", "NetworkPolicy"),
                                      ("monitoring.coreos.com/v1", "ServiceMonitor"),
                                      ("monitoring.coreos.com/v1", "PrometheusRule"))]


def _without_export_pool() -> dict[str, Any]:
    from bookgen_operator.core.spec.defaults import DEFAULT_POOLS

    return {"pools": [p for p in copy.deepcopy(DEFAULT_POOLS) if p["name"] != "export"]}


#: Acceptance 2: each removal, the spec change that makes it, and the children it must delete (by
#: plural and name); everything else stays. Switching Redis to external re-points the workloads at the
#: new URL, so there (only there) the Deployments are patched as well.
REMOVALS = {
    "pool": (_without_export_pool(), lambda plural, name: name == "demo-worker-export"),
    "flower": ({"flower": {"enabled": False}}, lambda plural, name: name == "demo-flower"),
    "beat": ({"beat": {"enabled": False}}, lambda plural, name: name == "demo-beat"),
    "redis-external": ({"redis": {"mode": "external", "url": "redis://redis.elsewhere:6379/0",
                                  "passwordSecretRef": {"name": "ext-redis", "key": "password"}}},
                       lambda plural, name: name in ("demo-redis", "demo-redis-headless")),
    "monitoring-never": ({"metrics": {"serviceMonitor": {"enabled": "never"}, "prometheusRule": {"enabled": "never"}}},
                         lambda plural, name: plural in ("servicemonitors", "prometheusrules")),
}


async def _children(cluster: Cluster) -> set[tuple[str, str]]:
    ns = cluster.namespace
    return {(res.plural, o["metadata"]["name"]) for res in CHILD_KINDS for o in await cluster.kube.list(res, ns)}


@pytest.mark.parametrize("removal", sorted(REMOVALS))
async def test_each_removal_deletes_exactly_its_children_in_one_reconcile(cluster: Cluster, removal: str) -> None:
    change, removed = REMOVALS[removal]
    op = await cluster.start_operator()
    ns = cluster.namespace
    await cluster.kube.create(RESOURCES[("v1", "Secret")], ns, {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "ext-redis"}, "stringData": {"password": "p"}})
    await cluster.kube.create(BGQ, ns, queue(cluster))
    await eventually(lambda: cluster.kube.get(DEPLOY, ns, "demo-flower"), timeout=60, what="every workload")
    await settled(op)
    before = await _children(cluster)
    expected = {child for child in before if removed(*child)}
    assert expected, f"the default spec has children for the {removal} case"
    claims = {o["metadata"]["name"] for o in await cluster.kube.list(PVC, ns)}
    assert claims, "the in-cluster Redis has its data claim"
    updates, mark = await op.reconciles("update"), cluster.audit.mark()
    await cluster.kube.patch(BGQ, ns, "demo", {"spec": change})

    async def gone() -> bool:
        return not await _children(cluster) & expected

    await eventually(gone, timeout=30, what=f"the {removal} children deleted")
    # One reconcile for the change. Timer reconciles (every 2 s here) and the children's own events
    # (the rolled Deployments' status) reconcile too, however long the deletes take: what proves the
    # removal was done in one pass is that each child was deleted exactly once and nothing else was.
    # The spec change's own reconcile may be counted after a timer reconcile already saw the new spec and
    # deleted (seen under load): wait for it, then check there was exactly one.
    async def updated() -> bool:
        return await op.reconciles("update") - updates >= 1

    await eventually(updated, timeout=30, what="the reconcile of the spec change")
    await settled(op)
    assert await op.reconciles("update") - updates == 1
    assert await _children(cluster) == before - expected
    writes = [w for w in cluster.audit.settled_writes(ADMIN_USER, since=mark)
              if w.namespace == ns and w.resource not in ("bookgenqueues", "events")]
    deleted = Counter((w.resource, w.name) for w in writes if w.verb == "delete")
    assert set(deleted) == expected, set(deleted) ^ expected
    assert all(n == 1 for n in deleted.values()), f"deleted more than once: {deleted}"
    others = {(w.verb, w.resource, w.name) for w in writes if w.verb != "delete"}
    if removal == "redis-external":
        assert {r for _, r, _ in others} <= {"deployments"}, others
    else:
        assert others == set(), others
    kept = {o["metadata"]["name"] for o in await cluster.kube.list(PVC, ns)}
    assert kept == claims, "Redis data claims are kept (documented)"


async def test_a_standby_replica_takes_over_within_15s_of_the_leaders_death(cluster: Cluster) -> None:
    ns = cluster.namespace
    a = await cluster.start_operator("op-a", leader_elect=True)
    await eventually(lambda: _lease_holder(cluster, "op-a"), timeout=60, what="op-a leading")
    b = await cluster.start_operator("op-b", leader_elect=True)
    await cluster.kube.create(BGQ, ns, queue(cluster))
    await eventually(lambda: cluster.kube.get(DEPLOY, ns, "demo-worker-content"), timeout=60, what="the workers")
    assert await b.writes() == -1.0, "the standby serves no metrics: it has not started the operator at all"

    a.process.send_signal(signal.SIGKILL)
    await a.process.wait()
    await cluster.kube.delete(DEPLOY, ns, "demo-worker-content")
    await eventually(lambda: cluster.kube.get(DEPLOY, ns, "demo-worker-content"), timeout=15,
                     what="the standby to act within 15 s of the leader's death")
    assert await _lease_holder(cluster, "op-b")


async def test_a_standby_stops_at_once_and_cleanly_on_sigterm(cluster: Cluster) -> None:
    """A rollout or scale-down sends SIGTERM to every replica. The standby used to have no handler yet
    (kopf installs its own only once it runs), so as PID 1 it ignored the signal and the kubelet
    killed it after the grace period (exit 137, seen on the real node)."""
    a = await cluster.start_operator("op-a", leader_elect=True)
    await eventually(lambda: _lease_holder(cluster, "op-a"), timeout=60, what="op-a leading")
    b = await cluster.start_operator("op-b", leader_elect=True)
    await eventually(lambda: _says(b, "is on standby"), timeout=60, what="op-b on standby")
    b.process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(b.process.wait(), 10) == 0, b.log()[-2000:]
    assert await _lease_holder(cluster, "op-a"), "the leader is untouched"
    await a.stop()
    assert a.process.returncode == 0, a.log()[-2000:]


async def _says(op: Operator, text: str) -> bool:
    return text in op.log()


async def test_two_replicas_never_write_replica_counts_in_the_same_second(cluster: Cluster, tmp_path: Path) -> None:
    """Acceptance 4, with the autoscaler on: op-a leads and scales a pool from a real Redis backlog,
    op-b writes nothing while op-a lives; after op-a's death op-b scales another pool. The audit log
    (each replica names itself in its User-Agent) never shows both writing replicas in one second."""
    from tests.support.redis_server import start_redis

    ns = cluster.namespace
    redis = start_redis(tmp_path)
    try:
        await cluster.kube.create(RESOURCES[("v1", "Secret")], ns, {
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "ext-redis"},
            "stringData": {"password": redis.password}})
        env = {"BOOKGEN_AUTOSCALER": "on"}
        a = await cluster.start_operator("op-a", leader_elect=True, env=env)
        await eventually(lambda: _lease_holder(cluster, "op-a"), timeout=60, what="op-a leading")
        b = await cluster.start_operator("op-b", leader_elect=True, env=env)
        mark = cluster.audit.mark()
        await cluster.kube.create(BGQ, ns, queue(cluster, spec={
            "redis": {"mode": "external", "url": f"redis://127.0.0.1:{redis.port}/0",
                      "passwordSecretRef": {"name": "ext-redis", "key": "password"}},
            "flower": {"enabled": False}, "beat": {"enabled": False}, "autoscaling": {"source": "redis"}}))
        await eventually(lambda: cluster.kube.get(DEPLOY, ns, "demo-worker-validation"), timeout=60, what="the pools")
        client = redis.client()
        client.lpush("content_generation", *[f"backlog-{i}" for i in range(200)])
        try:
            await eventually(lambda: _replicas_above(cluster, "demo-worker-content", 1), timeout=30,
                             what="op-a scaling the content pool up")
        except AssertionError:
            status = (await cluster.kube.get(BGQ, ns, "demo") or {}).get("status")
            raise AssertionError(f"status: {status}\nop-a:\n{a.log()[-4000:]}") from None
        assert await b.writes() == -1.0, "the standby has not started the operator"
        a.process.send_signal(signal.SIGKILL)
        await a.process.wait()
        client.lpush("validation", *[f"backlog-{i}" for i in range(200)])
        await eventually(lambda: _replicas_above(cluster, "demo-worker-validation", 1), timeout=30,
                         what="op-b scaling the validation pool up after op-a's death")
        scaling = [w for w in cluster.audit.settled_writes(ADMIN_USER, since=mark)
                   if w.namespace == ns and w.resource == "deployments" and w.verb == "patch"]
        seconds: dict[str, set[str]] = {"op-a": set(), "op-b": set()}
        for w in scaling:
            replica = next(r for r in seconds if f"({r}/" in w.user_agent)
            seconds[replica].add(w.time[:19])  # RFC 3339 up to the second
        assert seconds["op-a"] and seconds["op-b"], seconds
        assert not seconds["op-a"] & seconds["op-b"], seconds
        assert max(seconds["op-a"]) < min(seconds["op-b"]), "op-b wrote before op-a died"
        client.close()
    finally:
        redis.stop()


async def _lease_holder(cluster: Cluster, name: str) -> bool:
    lease = await cluster.kube.get(LEASE, cluster.namespace, "bookgen-operator")
    return ((lease or {}).get("spec") or {}).get("holderIdentity") == name


async def _replicas_above(cluster: Cluster, deployment: str, floor: int) -> bool:
    obj = await cluster.kube.get(DEPLOY, cluster.namespace, deployment)
    return ((obj or {}).get("spec") or {}).get("replicas", 0) > floor


async def test_pull_secrets_registry_and_digest_reach_every_child(cluster: Cluster) -> None:
    """Acceptance 7: every child pod spec gets the pull Secrets and the registry, the digest pins the image,
    and the real controllers make pods from them."""
    ns = cluster.namespace
    await cluster.start_operator(env={"BOOKGEN_IMAGE_REGISTRY": "registry.internal:5000",
                                      "BOOKGEN_REDIS_IMAGE_REGISTRY": "registry.internal:5000",
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
    # The digest-pinned references are valid image names to the API server and to the kubelet: the pods
    # exist, and the kubelet asks the mirror for exactly that reference (there is no registry here, so
    # the pull fails at the name lookup inside the cluster's namespace: nothing leaves the machine).
    pods = RESOURCES[("v1", "Pod")]

    async def pulled_from_the_mirror() -> bool:
        items = await cluster.kube.list(pods, ns)
        waiting = [s.get("state", {}).get("waiting", {}) for p in items
                   for s in (p.get("status") or {}).get("containerStatuses") or []]
        return len(items) >= 7 and len(waiting) >= 7 and all(
            w.get("reason") in ("ErrImagePull", "ImagePullBackOff")
            and "registry.internal:5000/" in w.get("message", "") for w in waiting)

    await eventually(pulled_from_the_mirror, timeout=90, what="every pod's image asked of registry.internal:5000")


async def test_monitor_labels_reach_the_servicemonitor_and_prometheusrule(cluster: Cluster) -> None:
    """Acceptance 6: the chart-wide labels (`monitoring.labels`, here `release: kps`) reach the per-queue
    ServiceMonitor and PrometheusRule, a queue's own `spec.metrics.monitorLabels` win over them, and the
    real prometheus-operator CRDs (tests/cluster/monitoring_crds.py) accept both objects."""
    served = await cluster.kube._request("GET", "/apis")
    assert "monitoring.coreos.com" in {g.get("name") for g in served.get("groups") or []}, \
        "the session fixture installs the prometheus-operator CRDs"
    ns = cluster.namespace
    await cluster.start_operator(env={"BOOKGEN_MONITOR_LABELS": "release=kps"})
    await cluster.kube.create(BGQ, ns, queue(cluster))
    await cluster.kube.create(BGQ, ns, queue(cluster, "own", {"metrics": {"monitorLabels": {"release": "team"}}}))
    kinds = [RESOURCES[("monitoring.coreos.com/v1", kind)] for kind in ("ServiceMonitor", "PrometheusRule")]
    for name, release in (("demo", "kps"), ("own", "team")):
        for res in kinds:
            obj = await eventually(lambda res=res, name=name: cluster.kube.get(res, ns, name), timeout=60,
                                   what=f"{res.plural}/{name}")
            assert obj["metadata"]["labels"]["release"] == release, (name, obj["metadata"]["labels"])
            assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"]  # ours kept beside the user's
    rule = await cluster.kube.get(kinds[1], ns, "demo")
    assert rule["spec"]["groups"] and all(r.get("alert") and r.get("expr") for g in rule["spec"]["groups"]
                                          for r in g["rules"])


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
        # A settled queue's timer reconcile reads the watch cache and sends nothing: a deleted Service
        # makes the next one read and recreate it, into the throttle.
        await cluster.kube.delete(RESOURCES[("v1", "Service")], ns, "demo-redis")
        await eventually(lambda: proxy.throttled > 0, timeout=10, what="a throttled request")
        await eventually(lambda: _more(op, runs + 3), timeout=60, what="reconciles after the throttling")
        after = await conditions()
        assert all(after.get(t) == "True" for t, s in before.items() if s == "True"), (before, after)
        assert proxy.throttled > 0
        await eventually(lambda: cluster.kube.get(RESOURCES[("v1", "Service")], ns, "demo-redis"), timeout=30,
                         what="the deleted Service recreated after the throttling")
        await cluster.kube.delete(DEPLOY, ns, "demo-worker-export")
        await eventually(lambda: cluster.kube.get(DEPLOY, ns, "demo-worker-export"), timeout=30,
                         what="the operator still repairing after the throttling")
        await op.stop()
    finally:
        await proxy.stop()
