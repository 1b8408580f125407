"""What a user meets right after `helm install` (issue 21), on the real node: the chart's operator and
a minimal BookGenQueue in real containers of the image built from our Dockerfile, under Pod Security
"restricted"; a whole book written through the pods; Flower and /metrics through their Services.

The product is installed once for the module as a user would: `helm install` with the image's
repository and tag, a restricted namespace, `kubectl apply -f examples/bookgenqueue-minimal.yaml`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client

from tests.cluster import operator_pods
from tests.cluster.conftest import Cluster, kubectl
from tests.cluster.product import Queue, delete_queue_and_namespace, ready, restricted_namespace
from tests.cluster.reach import service_get
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
MINIMAL = ROOT / "examples" / "bookgenqueue-minimal.yaml"
#: Deadlines this module holds the product to, from `helm install` / `kubectl apply`.
OPERATOR_READY_S = 60
QUEUE_READY_S = 120
WORKLOADS = {"redis", "worker-content", "worker-validation", "worker-export", "worker-monitoring", "beat", "flower"}


@dataclass
class Product:
    cluster: Cluster
    chart: operator_pods.ChartInstall
    queue: Queue
    operator_ready_s: float
    queue_ready_s: float


@pytest.fixture(scope="module")
def product(cluster: Cluster) -> Iterator[Product]:
    system, books = restricted_namespace(cluster, "bookgen-system"), restricted_namespace(cluster, "books")
    started = time.monotonic()
    chart = operator_pods.install(cluster, system, system.replace("-system", ""), replicas=2)
    queue = Queue(cluster, books, "bookgen")  # the example's name
    try:
        sel = f"app.kubernetes.io/instance={chart.release}"
        wait_for(lambda: len([p for p in cluster.core.list_namespaced_pod(system, label_selector=sel).items
                              if ready(p)]) == 2, timeout=OPERATOR_READY_S, interval=0.5,
                 what="the two operator replicas Running and Ready")
        operator_ready = time.monotonic() - started
        applied = time.monotonic()
        kubectl(cluster, "apply", "-n", books, "-f", str(MINIMAL))
        queue.wait_ready(QUEUE_READY_S)
        yield Product(cluster, chart, queue, operator_ready, time.monotonic() - applied)
    finally:
        delete_queue_and_namespace(cluster, queue)
        operator_pods.uninstall(cluster, chart)
        cluster.delete_namespace(system)


def _exec(cluster: Cluster, pod: client.V1Pod, container: str, script: str) -> str:
    out = kubectl(cluster, "exec", "-n", pod.metadata.namespace, pod.metadata.name, "-c", container,
                  "--", "sh", "-c", script, check=False)
    return out.stdout + out.stderr


def test_operator_and_every_child_run_in_real_containers_as_non_root_on_read_only_roots(product: Product) -> None:
    """Acceptance 2: operator, Redis, the four pools, beat, Flower and the metrics endpoint Running and
    Ready in real containers, each as its non-root user with a read-only root filesystem."""
    assert product.operator_ready_s <= OPERATOR_READY_S and product.queue_ready_s <= QUEUE_READY_S
    cluster, queue = product.cluster, product.queue
    queue_pods = queue.pods()
    components = {p.metadata.labels["app.kubernetes.io/component"] + (
        f"-{p.metadata.labels['bookgen.io/pool']}" if "bookgen.io/pool" in p.metadata.labels else "")
        for p in queue_pods}
    assert components == WORKLOADS, components
    operator = product.cluster.core.list_namespaced_pod(
        product.chart.namespace, label_selector=f"app.kubernetes.io/instance={product.chart.release}").items
    assert len(operator) == 2
    everything = [*operator, *queue_pods]
    assert all(ready(p) for p in everything), [(p.metadata.name, p.status.phase) for p in everything]
    our_images = set()
    for pod in everything:
        for status in pod.status.container_statuses:
            assert status.container_id.startswith("containerd://"), (pod.metadata.name, status.container_id)
            if "bookgen-queue" in status.image:
                our_images.add(status.image_id)
            probe = _exec(cluster, pod, status.name, "id -u; touch /probe-$$ && echo WROTE")
            uid = int(probe.split()[0])
            assert uid != 0, f"{pod.metadata.name}/{status.name} runs as root"
            assert "Read-only file system" in probe and "WROTE" not in probe, (pod.metadata.name, probe)
    # One image for the operator, workers, beat and Flower: the one this run built from our Dockerfile.
    assert len(our_images) == 1, our_images
    # The metrics endpoint: its Service has a ready endpoint (the monitoring pool's pod).
    slices = client.DiscoveryV1Api(cluster.api).list_namespaced_endpoint_slice(
        queue.namespace, label_selector=f"kubernetes.io/service-name={queue.name}-metrics").items
    assert [e for s in slices for e in s.endpoints or [] if e.conditions.ready], "no ready metrics endpoint"


#: The steps of a book of 4 chapters, with the pool each must run in.
STEPS = {"bookgen.generate_chapter": ("content", 4), "bookgen.generate_introduction": ("content", 1),
         "bookgen.generate_conclusion": ("content", 1), "bookgen.validate_complete_biography": ("validation", 1),
         "bookgen.export_to_markdown": ("export", 1), "bookgen.export_to_word": ("export", 1),
         "bookgen.export_to_pdf": ("export", 1)}


def test_a_whole_book_is_written_through_the_pods_each_step_in_a_worker_pod(product: Product) -> None:
    """Acceptance 3: a book job submitted through a port-forward to the queue's Redis completes, and
    Flower (the product's own view, through its Service) shows which worker pod ran each step."""
    queue = product.queue
    with queue.redis_port() as port:
        queue.enable_task_events(port)
        submitted = queue.bookgen(port, "submit", "Ada Lovelace", "--chapters", "4", "--wait", "-o", "json")
        assert submitted.returncode == 0, submitted.stderr
        final = json.loads(submitted.stdout.strip().splitlines()[-1])
    assert final["state"] == "COMPLETED", final

    def every_step() -> list[dict[str, object]]:
        done = [t for t in queue.tasks_of_job(final["id"]) if t.get("state") == "SUCCESS"]
        counts = {name: sum(t["name"] == name for t in done) for name in STEPS}
        return done if counts == {name: n for name, (_, n) in STEPS.items()} else []

    tasks = wait_for(every_step, timeout=30, interval=1, what="Flower's record of every step of the job")
    pool_of = {p.metadata.name: p.metadata.labels.get("bookgen.io/pool") for p in queue.pods()}
    ran: dict[str, list[str]] = {}
    for task in tasks:
        pool, _, pod = str(task["worker"]).partition("@")
        assert pool_of.get(pod) == pool, f"{task['name']} ran on {task['worker']}, not in a pod of pool {pool}"
        if task["name"] in STEPS:
            assert pool == STEPS[str(task["name"])][0], (task["name"], task["worker"])
            ran.setdefault(str(task["name"]), []).append(pod)
    table = "\n".join(f"  {name}: {', '.join(pods)}" for name, pods in sorted(ran.items()))
    print(f"which pod ran which step:\n{table}")


def test_flower_answers_through_its_service_with_its_login_and_metrics_through_theirs(product: Product) -> None:
    """Acceptance 6: Flower answers through its Service with its login (401 without); /metrics through
    the metrics Service returns the queue series."""
    queue = product.queue
    netns = product.cluster.sandbox.netns_path
    auth = (queue.secret("flower-auth", "username"), queue.secret("flower-auth", "password"))
    flower = f"{queue.name}-flower"
    denied = service_get(netns, flower, queue.namespace, 5555, "/api/workers")
    assert denied.status == 401, denied
    wrong = service_get(netns, flower, queue.namespace, 5555, "/api/workers", auth=(auth[0], "wrong"))
    assert wrong.status == 401, wrong
    workers = service_get(netns, flower, queue.namespace, 5555, "/api/workers?refresh=1", auth=auth)
    assert workers.status == 200, workers
    pools = {name.partition("@")[0] for name in json.loads(workers.body)}
    assert {"content", "validation", "export", "monitoring"} <= pools, pools
    metrics = service_get(netns, f"{queue.name}-metrics", queue.namespace, 9808, "/metrics")
    assert metrics.status == 200, metrics
    lines = metrics.body.splitlines()
    for series in ("bookgen_queue_pending", "bookgen_queue_in_flight", "bookgen_queue_oldest_pending_age_seconds"):
        for name in ("high_priority", "content_generation", "validation", "export", "monitoring", "default"):
            assert any(line.startswith(series + "{") and f'queue="{name}"' in line for line in lines), (series, name)
