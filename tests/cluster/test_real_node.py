"""What a user meets right after `helm install` (issue 21), on the real node: the chart's operator and
a minimal BookGenQueue in real containers of the image built from our Dockerfile, under Pod Security
"restricted"; a whole book written through the pods; Flower and /metrics through their Services.

The product is installed once for the module as a user would: `helm install` with the image's
repository and tag, a restricted namespace, `kubectl apply -f examples/bookgenqueue-minimal.yaml`.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.cluster import operator_pods
from tests.cluster.conftest import KUBECTL, RESTRICTED, Cluster, kubectl
from tests.cluster.reach import port_forward, service_get
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
MINIMAL = ROOT / "examples" / "bookgenqueue-minimal.yaml"
QUEUE = "bookgen"  # the example's name
#: Deadlines this module holds the product to, from `helm install` / `kubectl apply`.
OPERATOR_READY_S = 60
QUEUE_READY_S = 120
WORKLOADS = {"redis", "worker-content", "worker-validation", "worker-export", "worker-monitoring", "beat", "flower"}


@dataclass
class Product:
    cluster: Cluster
    system: str
    books: str
    chart: operator_pods.ChartInstall
    operator_ready_s: float
    queue_ready_s: float

    def pods(self, namespace: str, selector: str = "") -> list[client.V1Pod]:
        return [p for p in self.cluster.core.list_namespaced_pod(namespace, label_selector=selector).items
                if p.metadata.deletion_timestamp is None]

    def secret(self, name: str, key: str) -> str:
        data = self.cluster.core.read_namespaced_secret(name, self.books).data
        return base64.b64decode(data[key]).decode()

    def bookgen(self, *args: str, redis_port: int, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        url = f"redis://:{self.secret(f'{QUEUE}-redis', 'password')}@127.0.0.1:{redis_port}/0"
        bookgen = str(Path(KUBECTL).parent / "bookgen")
        return subprocess.run([bookgen, *args, "--redis-url", url], capture_output=True, text=True, timeout=timeout)


def _ready(pod: client.V1Pod) -> bool:
    return pod.status.phase == "Running" and all(s.ready for s in pod.status.container_statuses or [])


def _queue_ready(cluster: Cluster, ns: str) -> bool:
    try:
        obj = cluster.custom.get_namespaced_custom_object("bookgen.io", "v1alpha1", ns, "bookgenqueues", QUEUE)
    except client.ApiException:
        return False
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


@pytest.fixture(scope="module")
def product(cluster: Cluster) -> Iterator[Product]:
    suffix = uuid.uuid4().hex[:6]
    system, books = f"bookgen-system-{suffix}", f"books-{suffix}"
    for ns in (system, books):
        cluster.core.create_namespace({"metadata": {"name": ns, "labels": RESTRICTED}})
    started = time.monotonic()
    chart = operator_pods.install(cluster, system, f"bookgen-{suffix}", replicas=2)
    try:
        sel = f"app.kubernetes.io/instance={chart.release}"
        wait_for(lambda: len([p for p in cluster.core.list_namespaced_pod(system, label_selector=sel).items
                              if _ready(p)]) == 2, timeout=OPERATOR_READY_S, interval=0.5,
                 what="the two operator replicas Running and Ready")
        operator_ready = time.monotonic() - started
        wait_for(lambda: _has_default_sa(cluster, books), timeout=30, what="the default ServiceAccount")
        applied = time.monotonic()
        kubectl(cluster, "apply", "-n", books, "-f", str(MINIMAL))
        wait_for(lambda: _queue_ready(cluster, books), timeout=QUEUE_READY_S, interval=0.5,
                 what="the minimal BookGenQueue Ready")
        yield Product(cluster, system, books, chart, operator_ready, time.monotonic() - applied)
    finally:
        kubectl(cluster, "delete", "bookgenqueue", QUEUE, "-n", books, "--wait=true", "--timeout=60s", check=False)
        operator_pods.uninstall(cluster, chart)
        for ns in (system, books):
            cluster.core.delete_namespace(ns)


def _has_default_sa(cluster: Cluster, ns: str) -> bool:
    return any(sa.metadata.name == "default" for sa in cluster.core.list_namespaced_service_account(ns).items)


def _exec(product: Product, pod: client.V1Pod, container: str, script: str) -> str:
    out = kubectl(product.cluster, "exec", "-n", pod.metadata.namespace, pod.metadata.name, "-c", container,
                  "--", "sh", "-c", script, check=False)
    return out.stdout + out.stderr


def test_operator_and_every_child_run_in_real_containers_as_non_root_on_read_only_roots(product: Product) -> None:
    """Acceptance 2: operator, Redis, the four pools, beat, Flower and the metrics endpoint Running and
    Ready in real containers, each as its non-root user with a read-only root filesystem."""
    assert product.operator_ready_s <= OPERATOR_READY_S and product.queue_ready_s <= QUEUE_READY_S
    cluster = product.cluster
    queue_pods = product.pods(product.books, f"app.kubernetes.io/instance={QUEUE}")
    components = {p.metadata.labels["app.kubernetes.io/component"] + (
        f"-{p.metadata.labels['bookgen.io/pool']}" if "bookgen.io/pool" in p.metadata.labels else "")
        for p in queue_pods}
    assert components == WORKLOADS, components
    operator = product.pods(product.system, f"app.kubernetes.io/instance={product.chart.release}")
    assert len(operator) == 2
    everything = [*operator, *queue_pods]
    assert all(_ready(p) for p in everything), [(p.metadata.name, p.status.phase) for p in everything]
    our_images = set()
    for pod in everything:
        for status in pod.status.container_statuses:
            assert status.container_id.startswith("containerd://"), (pod.metadata.name, status.container_id)
            if "bookgen-queue" in status.image:
                our_images.add(status.image_id)
            probe = _exec(product, pod, status.name, "id -u; touch /probe-$$ && echo WROTE")
            uid = int(probe.split()[0])
            assert uid != 0, f"{pod.metadata.name}/{status.name} runs as root"
            assert "Read-only file system" in probe and "WROTE" not in probe, (pod.metadata.name, probe)
    # One image for the operator, workers, beat and Flower: the one this run built from our Dockerfile.
    assert len(our_images) == 1, our_images
    # The metrics endpoint: its Service has a ready endpoint (the monitoring pool's pod).
    slices = client.DiscoveryV1Api(cluster.api).list_namespaced_endpoint_slice(
        product.books, label_selector=f"kubernetes.io/service-name={QUEUE}-metrics").items
    ready = [e for s in slices for e in s.endpoints or [] if e.conditions.ready]
    assert ready, "the metrics Service has no ready endpoint"


def test_a_whole_book_is_written_through_the_pods_each_step_in_a_worker_pod(product: Product) -> None:
    """Acceptance 3: a book job submitted through a port-forward to the queue's Redis completes, and
    Flower (the product's own view, through its Service) shows which worker pod ran each step."""
    from celery import Celery

    with port_forward(KUBECTL, product.cluster.env(), product.books, f"svc/{QUEUE}-redis", 6379) as port:
        password = product.secret(f"{QUEUE}-redis", "password")
        control = Celery(broker=f"redis://:{password}@127.0.0.1:{port}/0")
        try:
            # Flower turns task events on every few seconds; the test does it once more and waits for
            # every pool's answer to a ping sent after it, so every step of the job is in Flower's view.
            control.control.enable_events()
            pongs = wait_for(lambda: (r := control.control.ping(timeout=2)) and len(r) >= 4 and r, timeout=60,
                             interval=1, what="every pool answering after enable_events")
        finally:
            control.close()
        assert {next(iter(p)).partition("@")[0] for p in pongs} == {"content", "validation", "export", "monitoring"}
        submitted = product.bookgen("submit", "Ada Lovelace", "--chapters", "4", "--wait", "-o", "json",
                                    redis_port=port)
        assert submitted.returncode == 0, submitted.stderr
        final = json.loads(submitted.stdout.strip().splitlines()[-1])
    assert final["state"] == "COMPLETED", final
    auth = (product.secret(f"{QUEUE}-flower-auth", "username"), product.secret(f"{QUEUE}-flower-auth", "password"))
    netns = product.cluster.sandbox.netns_path
    steps = {"bookgen.generate_chapter": 4, "bookgen.generate_introduction": 1, "bookgen.generate_conclusion": 1,
             "bookgen.validate_complete_biography": 1, "bookgen.export_to_markdown": 1,
             "bookgen.export_to_word": 1, "bookgen.export_to_pdf": 1}

    def tasks_of_job() -> list[dict[str, Any]]:
        answer = service_get(netns, f"{QUEUE}-flower", product.books, 5555, "/api/tasks?limit=2000", auth=auth)
        assert answer.status == 200, answer
        tasks = list(json.loads(answer.body).values())
        roots = {t["root_id"] for t in tasks if t.get("name") == "bookgen.job.start" and final["id"] in t["args"]}
        mine = [t for t in tasks if t.get("root_id") in roots and t.get("state") == "SUCCESS"]
        counts = {name: sum(t["name"] == name for t in mine) for name in steps}
        return mine if counts == steps else []

    tasks = wait_for(tasks_of_job, timeout=30, interval=1, what="Flower's record of every step of the job")
    pool_of = {p.metadata.name: p.metadata.labels.get("bookgen.io/pool") for p in product.pods(product.books)}
    expected_pool = {"bookgen.generate_chapter": "content", "bookgen.generate_introduction": "content",
                     "bookgen.generate_conclusion": "content", "bookgen.validate_complete_biography": "validation",
                     "bookgen.export_to_markdown": "export", "bookgen.export_to_word": "export",
                     "bookgen.export_to_pdf": "export"}
    ran: dict[str, list[str]] = {}
    for task in tasks:
        pool, _, pod = task["worker"].partition("@")
        assert pool_of.get(pod) == pool, f"{task['name']} ran on {task['worker']}, not in a pod of pool {pool}"
        if task["name"] in expected_pool:
            assert pool == expected_pool[task["name"]], (task["name"], task["worker"])
            ran.setdefault(task["name"], []).append(pod)
    table = "\n".join(f"  {name}: {', '.join(pods)}" for name, pods in sorted(ran.items()))
    print(f"which pod ran which step:\n{table}")


def test_flower_answers_through_its_service_with_its_login_and_metrics_through_theirs(product: Product) -> None:
    """Acceptance 6: Flower answers through its Service with its login (401 without); /metrics through
    the metrics Service returns the queue series."""
    netns = product.cluster.sandbox.netns_path
    auth = (product.secret(f"{QUEUE}-flower-auth", "username"), product.secret(f"{QUEUE}-flower-auth", "password"))
    denied = service_get(netns, f"{QUEUE}-flower", product.books, 5555, "/api/workers")
    assert denied.status == 401, denied
    wrong = service_get(netns, f"{QUEUE}-flower", product.books, 5555, "/api/workers", auth=(auth[0], "wrong"))
    assert wrong.status == 401, wrong
    workers = service_get(netns, f"{QUEUE}-flower", product.books, 5555, "/api/workers?refresh=1", auth=auth)
    assert workers.status == 200, workers
    pools = {name.partition("@")[0] for name in json.loads(workers.body)}
    assert {"content", "validation", "export", "monitoring"} <= pools, pools
    metrics = service_get(netns, f"{QUEUE}-metrics", product.books, 9808, "/metrics")
    assert metrics.status == 200, metrics
    lines = metrics.body.splitlines()
    for series in ("bookgen_queue_pending", "bookgen_queue_in_flight", "bookgen_queue_oldest_pending_age_seconds"):
        for queue in ("high_priority", "content_generation", "validation", "export", "monitoring", "default"):
            assert any(line.startswith(series + "{") and f'queue="{queue}"' in line for line in lines), (series, queue)
