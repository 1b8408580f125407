"""The real operator as users run it: the chart installed with the real helm, the operator in the
chart's Deployment (two replicas, leader election) in real pods of our image, as the chart's
ServiceAccount, on a real API server and node: children, conditions, repair, roll-out, invalid specs
and garbage collection."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.cluster import operator_pods
from tests.cluster.conftest import RESTRICTED, Cluster, kubectl
from tests.cluster.operator_pods import ChartInstall as Install
from tests.cluster.operator_pods import OperatorPods
from tests.support.waiting import wait_for

GROUP, VERSION, PLURAL = "bookgen.io", "v1alpha1", "bookgenqueues"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def chart(cluster: Cluster) -> Iterator[Install]:
    suffix = uuid.uuid4().hex[:6]
    ns = f"bookgen-system-{suffix}"
    cluster.core.create_namespace({"metadata": {"name": ns, "labels": RESTRICTED}})
    install = operator_pods.install(cluster, ns, f"bookgen-operator-{suffix}")
    try:
        yield install
    finally:
        try:
            operator_pods.uninstall(cluster, install)
        finally:
            cluster.delete_namespace(ns)


@pytest.fixture
def operator(cluster: Cluster, chart: Install, namespace: str) -> Iterator[OperatorPods]:
    # Cluster-wide, as the chart runs it by default (an earlier test's namespace may still be terminating).
    op = operator_pods.start(cluster, chart, env={"BOOKGEN_AUTOSCALER": "off"})
    try:
        yield op
    finally:
        operator_pods.stop_and_check(cluster, op)


def create_queue(cluster: Cluster, ns: str, name: str = "demo", spec: dict[str, Any] | None = None) -> dict[str, Any]:
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "BookGenQueue", "metadata": {"name": name},
            "spec": spec or {}}
    return cluster.custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)


def get_queue(cluster: Cluster, ns: str, name: str = "demo") -> dict[str, Any] | None:
    try:
        return cluster.custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
    except client.ApiException as e:
        if e.status == 404:
            return None
        raise


def conditions(cluster: Cluster, ns: str, name: str = "demo") -> dict[str, dict[str, Any]]:
    obj = get_queue(cluster, ns, name) or {}
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


def children(cluster: Cluster, ns: str, instance: str = "demo") -> set[tuple[str, str]]:
    sel = f"app.kubernetes.io/instance={instance}"
    found: set[tuple[str, str]] = set()
    for kind, items in (
        ("Deployment", cluster.apps.list_namespaced_deployment(ns, label_selector=sel).items),
        ("StatefulSet", cluster.apps.list_namespaced_stateful_set(ns, label_selector=sel).items),
        ("Service", cluster.core.list_namespaced_service(ns, label_selector=sel).items),
        ("PodDisruptionBudget", client.PolicyV1Api(cluster.api).list_namespaced_pod_disruption_budget(
            ns, label_selector=sel).items),
        ("NetworkPolicy", client.NetworkingV1Api(cluster.api).list_namespaced_network_policy(
            ns, label_selector=sel).items),
    ):
        found |= {(kind, o.metadata.name) for o in items}
    found |= {("Secret", s.metadata.name) for s in cluster.core.list_namespaced_secret(ns).items
              if any(r.name == instance for r in s.metadata.owner_references or [])}
    return found


def expected_children(ns: str, name: str = "demo", spec: dict[str, Any] | None = None) -> set[tuple[str, str]]:
    from bookgen_operator.core.resources import desired_objects
    from bookgen_operator.core.spec import parse_queue

    parsed = parse_queue({"apiVersion": f"{GROUP}/{VERSION}", "kind": "BookGenQueue",
                          "metadata": {"name": name, "namespace": ns, "uid": "x"}, "spec": spec or {}})
    kinds = {"Deployment", "StatefulSet", "Service", "PodDisruptionBudget", "NetworkPolicy"}
    return {(o["kind"], o["metadata"]["name"]) for o in desired_objects(parsed) if o["kind"] in kinds} | {
        ("Secret", f"{name}-redis"), ("Secret", f"{name}-flower-auth")}


def test_a_queue_gets_every_child_its_pods_pass_restricted_and_it_becomes_ready(
    cluster: Cluster, namespace: str, chart: Install, operator: OperatorPods
) -> None:
    created = create_queue(cluster, namespace)
    wanted = expected_children(namespace)
    wait_for(lambda: wanted <= children(cluster, namespace), timeout=60, what="every child")
    assert children(cluster, namespace) == wanted
    for dep in cluster.apps.list_namespaced_deployment(namespace).items:
        (ref,) = dep.metadata.owner_references
        assert ref.uid == created["metadata"]["uid"] and ref.controller and ref.block_owner_deletion
    # The real controllers made pods from them, and Pod Security "restricted" admitted every one.
    ready = wait_for(lambda: conditions(cluster, namespace).get("Ready", {}).get("status") == "True"
                     and conditions(cluster, namespace), timeout=120, what="Ready=True")
    assert all(ready[t]["status"] == "True" for t in ("RedisReady", "WorkersReady", "FlowerReady"))
    failed = [e for e in cluster.core.list_namespaced_event(namespace).items if e.reason == "FailedCreate"]
    assert not failed, [e.message for e in failed]
    pods = cluster.core.list_namespaced_pod(namespace, label_selector="app.kubernetes.io/instance=demo").items
    assert len(pods) >= 7 and all(p.status.phase == "Running" for p in pods)
    status = get_queue(cluster, namespace)["status"]
    assert status["observedGeneration"] == 1 and status["workers"] == 4
    # The operator's watches of its children are filtered by the API server, not in the operator.
    watches = [w for w in cluster.audit.watches(chart.username, since=operator.audit_mark)
               if w.resource in ("deployments", "statefulsets")]
    assert watches and all("labelSelector=" in w.uri for w in watches), [w.uri for w in watches]
    # The API server kept every status field the operator wrote (the CRD declares them).
    assert {"replicas", "readyReplicas"} <= status["pools"]["content"].keys()


def test_a_deleted_child_is_restored_and_a_spec_change_rolls_out(
    cluster: Cluster, namespace: str, operator: OperatorPods
) -> None:
    create_queue(cluster, namespace)
    name = "demo-worker-content"
    first = wait_for(lambda: _deployment(cluster, namespace, name), timeout=60, what="the content pool")
    cluster.apps.delete_namespaced_deployment(name, namespace)
    again = wait_for(lambda: (d := _deployment(cluster, namespace, name)) and d.metadata.uid != first.metadata.uid
                     and d, timeout=60, what="the deleted Deployment recreated")
    assert again.spec.template.spec.containers[0].command[0] == "celery"

    pools = [
        {"name": "content", "queues": ["content_generation", "high_priority"], "concurrency": 3},
        {"name": "monitoring", "queues": ["monitoring", "validation", "export"], "concurrency": 1},
    ]
    cluster.custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "demo",
                                                  {"spec": {"queues": None, "pools": pools}})

    def concurrency() -> str:
        cmd = _deployment(cluster, namespace, name).spec.template.spec.containers[0].command
        return cmd[cmd.index("-c") + 1]

    wait_for(lambda: concurrency() == "3", timeout=60, what="concurrency 3 rolled out")
    wait_for(lambda: (get_queue(cluster, namespace)["status"] or {}).get("observedGeneration") == 2, timeout=60,
             what="observedGeneration 2")
    # The real deployment controller rolled the pods over to the new template.
    wait_for(lambda: (d := _deployment(cluster, namespace, name)).status.updated_replicas == d.spec.replicas
             and d.status.ready_replicas == d.spec.replicas, timeout=90, what="the rollout to finish")


def test_settled_timer_reconciles_read_the_children_from_the_watches_and_still_repair_drift(
    cluster: Cluster, namespace: str, chart: Install, operator: OperatorPods
) -> None:
    """Issue 14: a reconcile every 30 s per queue used to LIST five kinds and GET a Secret; the children
    now come from kopf's label-selected watches (child_cache.py), re-listed every few minutes."""
    create_queue(cluster, namespace)
    wait_for(lambda: conditions(cluster, namespace).get("Ready", {}).get("status") == "True", timeout=120,
             what="Ready=True")
    watched = {w.resource for w in cluster.audit.watches(chart.username, since=operator.audit_mark)
               if "labelSelector=" in w.uri}
    assert {"services", "poddisruptionbudgets", "networkpolicies", "deployments", "statefulsets"} <= watched
    mark = cluster.audit.mark()
    timer_runs = operator.metric_sum("bookgen_operator_reconciles_total")
    # The test operator reconciles every 2 s: wait for at least four timer reconciles.
    wait_for(lambda: operator.metric_sum("bookgen_operator_reconciles_total") >= timer_runs + 4, timeout=60,
             what="four more reconciles")
    sent = [e for e in cluster.audit.events(mark) if e.user == chart.username and e.namespace == namespace
            and e.stage == "ResponseComplete"]
    cached = {"services", "poddisruptionbudgets", "networkpolicies", "deployments", "statefulsets", "secrets"}
    assert not [(e.verb, e.resource) for e in sent if e.resource in cached], [(e.verb, e.resource) for e in sent]
    # Drift is still repaired from the cache: a deleted Service (no reconcile is triggered by Services).
    cluster.core.delete_namespaced_service("demo-redis", namespace)
    wait_for(lambda: ("Service", "demo-redis") in children(cluster, namespace), timeout=60,
             what="the deleted Service recreated")


def test_an_invalid_spec_is_reported_in_status(cluster: Cluster, namespace: str, operator: OperatorPods) -> None:
    # Accepted by the schema (a lenient rule the CRD cannot state), refused by the operator's own check.
    spec = {"redis": {"mode": "external", "url": "redis://redis.example:6379/0",
                      "passwordSecretRef": {"name": "absent", "key": "password"}}}
    create_queue(cluster, namespace, spec=spec)
    ready = wait_for(lambda: conditions(cluster, namespace).get("Ready"), timeout=60, what="a Ready condition")
    assert ready["status"] == "False" and ready["reason"] == "SecretNotFound"
    assert f"{namespace}/absent" in ready["message"]
    assert not cluster.apps.list_namespaced_deployment(namespace).items


def test_deleting_the_queue_removes_every_child_through_the_garbage_collector(
    cluster: Cluster, namespace: str, operator: OperatorPods
) -> None:
    create_queue(cluster, namespace)
    wanted = expected_children(namespace)
    wait_for(lambda: wanted <= children(cluster, namespace), timeout=60, what="every child")
    kubectl(cluster, "delete", "bookgenqueue", "demo", "-n", namespace, "--wait=true", "--timeout=60s")
    wait_for(lambda: not children(cluster, namespace), timeout=90, what="the garbage collector to remove children")
    wait_for(lambda: not cluster.core.list_namespaced_pod(namespace).items, timeout=90, what="every pod gone")


def _deployment(cluster: Cluster, ns: str, name: str) -> Any:
    try:
        return cluster.apps.read_namespaced_deployment(name, ns)
    except client.ApiException as e:
        if e.status == 404:
            return None
        raise


def test_two_thousand_unrelated_deployments_grow_the_operators_memory_by_less_than_10_mib(
    cluster: Cluster, chart: Install, namespace: str, operator: OperatorPods
) -> None:
    """Issue 13, acceptance 3: the operator (cluster-wide, as the chart runs it) watches only its own
    children, filtered by the API server, so 2,000 Deployments of another team cost it nothing."""
    from concurrent.futures import ThreadPoolExecutor

    create_queue(cluster, namespace)
    wait_for(lambda: conditions(cluster, namespace).get("Ready", {}).get("status") == "True", timeout=120,
             what="the queue Ready")

    def after_reconciles(n: int) -> float:
        target = operator.metric_sum("bookgen_operator_reconciles_total") + n
        wait_for(lambda: operator.metric_sum("bookgen_operator_reconciles_total") >= target, timeout=120,
                 what=f"{n} more reconciles")
        return operator.rss_mib()

    before = after_reconciles(5)
    elsewhere = f"elsewhere-{uuid.uuid4().hex[:6]}"
    cluster.core.create_namespace({"metadata": {"name": elsewhere}})
    try:
        def deployment(i: int) -> None:
            env = [{"name": f"SETTING_{k}", "value": "x" * 40} for k in range(20)]  # ~3 KB, a typical size
            labels = {"app": f"app-{i}", "team": "other"}
            cluster.apps.create_namespaced_deployment(elsewhere, {
                "metadata": {"name": f"app-{i}", "labels": labels},
                "spec": {"replicas": 0, "selector": {"matchLabels": labels},
                         "template": {"metadata": {"labels": labels},
                                      "spec": {"containers": [{"name": "app", "image": "registry.example/app:1.0",
                                                               "env": env}]}}}})

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(deployment, range(2000)))
        assert len(cluster.apps.list_namespaced_deployment(elsewhere).items) == 2000
        after = after_reconciles(5)
        assert after - before < 10, f"RSS {before:.1f} -> {after:.1f} MiB with 2,000 unrelated Deployments"
        watches = [w for w in cluster.audit.watches(chart.username, since=operator.audit_mark)
                   if w.resource in ("deployments", "statefulsets")]
        assert watches and all("labelSelector=" in w.uri for w in watches), [w.uri for w in watches]
    finally:
        cluster.delete_namespace(elsewhere)
