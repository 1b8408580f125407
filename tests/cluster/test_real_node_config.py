"""The real job on Kubernetes (issue 23, acceptances 1 and 2), on the real node, with the chart's
operator in pods:

1. a queue whose content pool uses `generator: openai`, pointed at an OpenAI-compatible server running
   in the cluster (tests/cluster/llm_server.py) with its key from a Secret, writes a book from that
   server's answers, and the key is in no status, event, pod log or `bookgen render` output;
2. a pod template (nodeSelector, toleration, priority class, label) reaches every child pod, which the
   scheduler places accordingly on the tainted, labelled node; a pool whose template cannot be
   satisfied stays Pending and the queue's status says why; the settled queue makes no write in 120 s
   (the audit log) and a hand edit of a templated field is repaired with one write.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from bookgen_operator.core.spec.defaults import DEFAULT_POOLS
from kubernetes import client

from tests.cluster import llm_server, operator_pods
from tests.cluster.conftest import KUBECTL, Cluster, kubectl
from tests.cluster.node import NODE_NAME
from tests.cluster.product import Queue, delete_queue_and_namespace, ready, restricted_namespace
from tests.support.waiting import wait_for

#: How long a settled queue is watched for writes (the acceptance asks 120 s).
SETTLE_SECONDS = float(os.environ.get("BOOKGEN_CLUSTER_SETTLE_SECONDS", "120"))
BOOKGEN = str(Path(KUBECTL).parent / "bookgen")


def owners_mapped(cluster: Cluster) -> None:
    """Wait until the API server's OwnerReferencesPermissionEnforcement can map a BookGenQueue: on a
    cluster whose CRD was just installed it refuses children for some 20 s ("cannot find RESTMapping",
    docs/known-limits.md), which the operator would log as a 403 that stop_and_check takes for RBAC."""
    ns = restricted_namespace(cluster, "mapping")
    try:
        owner = cluster.custom.create_namespaced_custom_object("bookgen.io", "v1alpha1", ns, "bookgenqueues", {
            "apiVersion": "bookgen.io/v1alpha1", "kind": "BookGenQueue", "metadata": {"name": "probe"}, "spec": {}})
        ref = {"apiVersion": "bookgen.io/v1alpha1", "kind": "BookGenQueue", "name": "probe",
               "uid": owner["metadata"]["uid"], "blockOwnerDeletion": True}

        def child_accepted() -> bool:
            try:
                cluster.core.create_namespaced_config_map(ns, {"metadata": {
                    "generateName": "probe-", "ownerReferences": [ref]}})
                return True
            except client.ApiException as e:
                if e.status == 403 and "RESTMapping" in str(e.body):
                    return False
                raise

        wait_for(child_accepted, timeout=90, interval=1, what="the API server mapping BookGenQueue owners")
    finally:
        cluster.custom.delete_namespaced_custom_object("bookgen.io", "v1alpha1", ns, "bookgenqueues", "probe")
        cluster.delete_namespace(ns)


@pytest.fixture(scope="module")
def operator(cluster: Cluster) -> Iterator[operator_pods.OperatorPods]:
    """The chart's operator, two replicas, the autoscaler off: pools keep their minReplicas, so what
    the audit log shows in a settled window is the reconciler's doing alone."""
    owners_mapped(cluster)
    system = restricted_namespace(cluster, "bookgen-system")
    chart = operator_pods.install(cluster, system, system.replace("-system", ""))
    op = operator_pods.start(cluster, chart, env={"BOOKGEN_AUTOSCALER": "off"})
    try:
        yield op
    finally:
        operator_pods.stop_and_check(cluster, op)
        operator_pods.uninstall(cluster, chart)
        cluster.delete_namespace(system)


def pools(**by_name: dict[str, Any]) -> list[dict[str, Any]]:
    out = copy.deepcopy(DEFAULT_POOLS)
    for pool in out:
        pool.update(by_name.get(pool["name"], {}))
    return out


def logs_of(cluster: Cluster, namespace: str, selector: str) -> str:
    """Every container's log of every pod the selector finds (and of the previous run of a restarted one)."""
    texts = []
    for pod in cluster.core.list_namespaced_pod(namespace, label_selector=selector).items:
        for previous in ("--previous=false", "--previous=true"):
            out = kubectl(cluster, "logs", "-n", namespace, pod.metadata.name, "--all-containers", previous,
                          check=False)
            texts.append(out.stdout)
    return "\n".join(texts)


def test_a_book_is_written_by_an_openai_compatible_server_and_its_key_stays_secret(
    cluster: Cluster, operator: operator_pods.OperatorPods, tmp_path: Path
) -> None:
    """Acceptance 1."""
    key, marker = f"sk-bookgen-{uuid.uuid4().hex}", f"QUILL{uuid.uuid4().hex[:12]}"
    queue = Queue(cluster, restricted_namespace(cluster, "llm"), "books")
    ns = queue.namespace
    try:
        cluster.core.create_namespaced_secret(ns, {"metadata": {"name": "llm-key"}, "stringData": {"api-key": key}})
        repository, tag = operator_pods.product_image(cluster)
        base_url = llm_server.deploy(cluster, ns, f"{repository}:{tag}", "llm-key", marker)
        generator = {"type": "openai", "openai": {"baseUrl": base_url, "model": "test-model", "timeoutSeconds": 30,
                                                  "apiKeySecretRef": {"name": "llm-key", "key": "api-key"}}}
        spec = {"pools": pools(content={"generator": generator})}
        queue.create(spec)
        queue.wait_ready()
        deployment = cluster.apps.read_namespaced_deployment(f"{queue.name}-worker-content", ns)
        env = {e.name: e for e in deployment.spec.template.spec.containers[0].env}
        assert env["BOOKGEN_GENERATOR"].value == "openai" and env["BOOKGEN_LLM_BASE_URL"].value == base_url
        assert env["BOOKGEN_LLM_API_KEY"].value is None
        assert env["BOOKGEN_LLM_API_KEY"].value_from.secret_key_ref.name == "llm-key"

        with queue.redis_port() as port:
            job = queue.submit(port, "Ada Lovelace", "--chapters", "2", "--words", "300", "--formats", "md")
            final = queue.wait_job(port, job, timeout=300)
        assert final["state"] == "COMPLETED", final
        (path,) = final["outputs"].values()  # the one format asked for
        (export,) = [p for p in queue.pods("export") if ready(p)]
        book = kubectl(cluster, "exec", "-n", ns, export.metadata.name, "-c", "worker", "--", "cat", path).stdout
        # Two chapters, the introduction and the conclusion: each from the server, each with its marker.
        assert book.count(marker) == 4, book[:2000]
        served = logs_of(cluster, ns, "app=llm")
        assert served.count("answered a request") >= 4 and "refused" not in served, served

        # The key: only in the Secret, and in the Authorization headers the server checked.
        status = json.dumps(queue.body().get("status") or {})
        events = kubectl(cluster, "get", "events", "-n", ns, "-o", "json").stdout
        operator_events = kubectl(cluster, "get", "events", "-n", operator.chart.namespace, "-o", "json").stdout
        pod_logs = logs_of(cluster, ns, f"app.kubernetes.io/instance={queue.name}")
        spec_file = tmp_path / "queue.yaml"
        spec_file.write_text(yaml.safe_dump({"apiVersion": "bookgen.io/v1alpha1", "kind": "BookGenQueue",
                                             "metadata": {"name": queue.name, "namespace": ns}, "spec": spec}))
        render = subprocess.run([BOOKGEN, "render", "-f", str(spec_file)], capture_output=True, text=True,
                                timeout=60)
        assert render.returncode == 0, render.stderr
        assert "secretKeyRef" in render.stdout and "llm-key" in render.stdout
        for where, text in (("status", status), ("events", events), ("operator events", operator_events),
                            ("the queue's pod logs", pod_logs), ("the server's log", served),
                            ("the operator's logs", operator.log()), ("bookgen render", render.stdout)):
            assert key not in text, f"the API key appears in {where}"
    finally:
        delete_queue_and_namespace(cluster, queue)


def quiet(cluster: Cluster, user: str, namespace: str, seconds: float = 10, timeout: float = 120) -> None:
    """Wait until `user` has written nothing in `namespace` for `seconds`."""
    deadline = time.monotonic() + timeout
    mark, since = cluster.audit.mark(), time.monotonic()
    while time.monotonic() - since < seconds:
        assert time.monotonic() < deadline, f"{user} kept writing in {namespace}"
        time.sleep(1)
        if [w for w in cluster.audit.writes(user, since=mark) if w.namespace == namespace]:
            mark, since = cluster.audit.mark(), time.monotonic()


def _pods_carry(pods: list[client.V1Pod], label: tuple[str, str], toleration_key: str, priority_class: str) -> None:
    for pod in pods:
        name = pod.metadata.name
        assert pod.metadata.labels.get(label[0]) == label[1], name
        assert pod.spec.node_selector.get(label[0]) == label[1], name
        assert any(t.key == toleration_key for t in pod.spec.tolerations or []), name
        assert pod.spec.priority_class_name == priority_class and pod.spec.priority == 1000, name


def test_a_pod_template_places_every_child_and_a_settled_queue_makes_no_write(
    cluster: Cluster, operator: operator_pods.OperatorPods
) -> None:
    """Acceptance 2."""
    suffix = uuid.uuid4().hex[:6]
    label, taint, priority = f"bookgen.io/test-{suffix}", f"bookgen.io/dedicated-{suffix}", f"bookgen-test-{suffix}"
    scheduling = client.SchedulingV1Api(cluster.api)
    scheduling.create_priority_class({"metadata": {"name": priority}, "value": 1000,
                                      "description": "test: a priority class every child pod carries"})
    kubectl(cluster, "label", "node", NODE_NAME, f"{label}=yes")
    kubectl(cluster, "taint", "node", NODE_NAME, f"{taint}=yes:NoSchedule")
    queue = Queue(cluster, restricted_namespace(cluster, "placed"), "placed")
    ns = queue.namespace
    try:
        template = {"metadata": {"labels": {label: "yes"}},
                    "spec": {"nodeSelector": {label: "yes"}, "priorityClassName": priority,
                             "tolerations": [{"key": taint, "operator": "Equal", "value": "yes",
                                              "effect": "NoSchedule"}]}}
        stuck = {"name": "stuck", "queues": ["default"],
                 "podTemplate": {"spec": {"nodeSelector": {"bookgen.io/no-such-node": "true"}}}}
        # No Redis claim: the provisioner's helper pod would not tolerate the test's taint.
        queue.create({"podTemplate": template, "pools": [*pools(), stuck],
                      "redis": {"podTemplate": template, "persistence": {"enabled": False}}})

        def placed() -> list[client.V1Pod] | None:
            found = [p for p in queue.pods() if not p.metadata.deletion_timestamp]
            running = [p for p in found if p.metadata.labels.get("bookgen.io/pool") != "stuck" and ready(p)]
            return found if len(found) == 8 and len(running) == 7 else None

        pods = wait_for(placed, timeout=240, interval=1, what="Redis, beat, Flower and four pools running")
        _pods_carry(pods, (label, "yes"), taint, priority)
        (pending,) = queue.pods("stuck")
        assert pending.status.phase == "Pending" and pending.spec.node_name is None
        scheduled = next(c for c in pending.status.conditions if c.type == "PodScheduled")
        assert scheduled.status == "False" and scheduled.reason == "Unschedulable"
        workers = wait_for(lambda: (c := queue.condition("WorkersReady")).get("status") == "False"
                           and "stuck 0/1 (cannot be scheduled:" in c.get("message", "") and c,
                           timeout=60, interval=0.5, what="WorkersReady saying why the stuck pool is Pending")
        assert "didn't match Pod's node affinity/selector" in workers["message"], workers
        assert queue.condition()["status"] == "False" and "stuck 0/1" in queue.condition()["message"]

        # Settled: no write at all (children, status, events) for SETTLE_SECONDS, timer reconciles included.
        user = operator.chart.username
        quiet(cluster, user, ns)  # the last readiness changes reach the status first
        mark = cluster.audit.mark()
        runs = operator.metric_sum("bookgen_operator_reconciles_total")
        deadline = time.monotonic() + SETTLE_SECONDS
        while time.monotonic() < deadline:
            writes = [w for w in cluster.audit.writes(user, since=mark) if w.namespace == ns]
            assert not writes, [(w.verb, w.resource, w.subresource, w.name) for w in writes]
            time.sleep(2)
        writes = [w for w in cluster.audit.settled_writes(user, since=mark) if w.namespace == ns]
        assert writes == [], [(w.verb, w.resource, w.subresource, w.name) for w in writes]
        assert operator.metric_sum("bookgen_operator_reconciles_total") - runs >= SETTLE_SECONDS / 2 / 2

        # A hand edit of a templated field (the label, off the validation pool's pods): one write repairs it.
        name = f"{queue.name}-worker-validation"
        repair_mark = cluster.audit.mark()
        kubectl(cluster, "patch", "deployment", name, "-n", ns, "--type=json",
                "-p", json.dumps([{"op": "remove", "path": "/spec/template/metadata/labels/" +
                                   label.replace("/", "~1")}]))

        def repaired() -> bool:
            dep = cluster.apps.read_namespaced_deployment(name, ns)
            return (dep.spec.template.metadata.labels.get(label) == "yes"
                    and dep.status.updated_replicas == dep.spec.replicas == dep.status.ready_replicas
                    and dep.status.replicas == dep.spec.replicas)

        wait_for(repaired, timeout=180, interval=1, what="the label repaired and the rollout done")
        quiet(cluster, user, ns)
        child_writes = [(w.verb, w.resource, w.name) for w in cluster.audit.settled_writes(user, since=repair_mark)
                        if w.namespace == ns and w.resource not in ("bookgenqueues", "events")]
        assert child_writes == [("patch", "deployments", name)], child_writes
        _pods_carry([p for p in queue.pods("validation") if not p.metadata.deletion_timestamp], (label, "yes"),
                    taint, priority)
    finally:
        delete_queue_and_namespace(cluster, queue)
        kubectl(cluster, "taint", "node", NODE_NAME, f"{taint}-", check=False)
        kubectl(cluster, "label", "node", NODE_NAME, f"{label}-", check=False)
        scheduling.delete_priority_class(priority)


def test_a_child_the_api_server_refuses_is_reported_in_status(
    cluster: Cluster, operator: operator_pods.OperatorPods
) -> None:
    """What the schema and the operator's own checks cannot see (a node affinity without a term) the
    API server refuses when the Deployment is written: the queue says so, in the server's words."""
    queue = Queue(cluster, restricted_namespace(cluster, "refused"), "refused")
    try:
        queue.create({"podTemplate": {"spec": {"affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}}}}})
        found = wait_for(lambda: (c := queue.condition()).get("reason") == "ChildRejected" and c, timeout=60,
                         interval=0.5, what="Ready=False/ChildRejected")
        assert found["status"] == "False" and "nodeSelectorTerms" in found["message"], found
    finally:
        delete_queue_and_namespace(cluster, queue)
