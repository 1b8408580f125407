"""A BookGenQueue on the real node, reached as its user reaches it: its Secrets, its Redis through
`kubectl port-forward`, the `bookgen` CLI, Celery's remote control, and Flower's API through its
Service (from inside the cluster's namespace)."""

from __future__ import annotations

import base64
import contextlib
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client

from tests.cluster import secret_scan
from tests.cluster.conftest import KUBECTL, Cluster, kubectl
from tests.cluster.reach import port_forward, service_get
from tests.support.waiting import wait_for

GROUP, VERSION, PLURAL = "bookgen.io", "v1alpha1", "bookgenqueues"
POOLS = ("content", "validation", "export", "monitoring")


def ready(pod: client.V1Pod) -> bool:
    return pod.status.phase == "Running" and all(s.ready for s in pod.status.container_statuses or [])


@dataclass
class Queue:
    cluster: Cluster
    namespace: str
    name: str

    # -- the Kubernetes side ----------------------------------------------------------------------

    def create(self, spec: dict[str, Any]) -> None:
        self.cluster.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "BookGenQueue", "metadata": {"name": self.name},
            "spec": spec})

    def patch(self, spec: dict[str, Any]) -> None:
        self.cluster.custom.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, self.name,
                                                           {"spec": spec})

    def annotate(self, annotations: dict[str, str | None]) -> None:
        """Set (None: remove) annotations of the queue, as `kubectl annotate` does."""
        self.cluster.custom.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, self.name,
                                                           {"metadata": {"annotations": annotations}})

    def body(self) -> dict[str, Any]:
        return self.cluster.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, self.name)

    def condition(self, kind: str = "Ready") -> dict[str, Any]:
        try:
            conditions = (self.body().get("status") or {}).get("conditions") or []
        except client.ApiException:
            return {}
        return next((c for c in conditions if c["type"] == kind), {})

    def is_ready(self) -> bool:
        return self.condition().get("status") == "True"

    def wait_ready(self, timeout: float = 180) -> None:
        wait_for(self.is_ready, timeout=timeout, interval=0.5, what=f"BookGenQueue {self.name} Ready")

    def pods(self, pool: str | None = None) -> list[client.V1Pod]:
        sel = f"app.kubernetes.io/instance={self.name}" + (f",bookgen.io/pool={pool}" if pool else "")
        return self.cluster.core.list_namespaced_pod(self.namespace, label_selector=sel).items

    def replicas(self, pool: str) -> int:
        return int(self.cluster.apps.read_namespaced_deployment(f"{self.name}-worker-{pool}", self.namespace)
                   .spec.replicas)

    def secret(self, suffix: str, key: str) -> str:
        data = self.cluster.core.read_namespaced_secret(f"{self.name}-{suffix}", self.namespace).data
        return base64.b64decode(data[key]).decode()

    # -- the user's side --------------------------------------------------------------------------

    @contextlib.contextmanager
    def redis_port(self) -> Iterator[int]:
        with port_forward(KUBECTL, self.cluster.env(), self.namespace, f"svc/{self.name}-redis", 6379) as port:
            yield port

    def redis_url(self, port: int) -> str:
        return f"redis://:{self.secret('redis', 'password')}@127.0.0.1:{port}/0"

    def bookgen(self, port: int, *args: str, timeout: float = 280) -> subprocess.CompletedProcess[str]:
        bookgen = str(Path(KUBECTL).parent / "bookgen")
        return subprocess.run([bookgen, *args, "--redis-url", self.redis_url(port)], capture_output=True, text=True,
                              timeout=timeout)

    def submit(self, port: int, subject: str, *args: str) -> str:
        out = self.bookgen(port, "submit", subject, *args, "-o", "json")
        assert out.returncode == 0, out.stderr
        return str(json.loads(out.stdout)["id"])

    def job(self, port: int, job_id: str) -> dict[str, Any]:
        out = self.bookgen(port, "show", job_id, "-o", "json")
        assert out.returncode == 0, out.stderr
        return dict(json.loads(out.stdout))

    def wait_job(self, port: int, job_id: str, timeout: float = 240) -> dict[str, Any]:
        def over() -> dict[str, Any] | None:
            job = self.job(port, job_id)
            return job if job["state"] in ("COMPLETED", "COMPLETED_WITH_ERRORS", "FAILED", "CANCELLED") else None

        return wait_for(over, timeout=timeout, interval=1, what=f"job {job_id} to end")

    def enable_task_events(self, port: int, pools: tuple[str, ...] = POOLS) -> None:
        """Flower turns task events on every few seconds; do it once more and wait until a worker of
        every pool has answered a ping sent after it, so Flower sees every task from here on."""
        from celery import Celery

        control = Celery(broker=self.redis_url(port))
        try:
            control.control.enable_events()

            def answered() -> bool:
                replies = control.control.ping(timeout=2) or []
                return set(pools) <= {next(iter(r)).partition("@")[0] for r in replies}

            wait_for(answered, timeout=90, interval=1, what=f"every pool of {self.name} answering a ping")
        finally:
            control.close()

    def flower(self, path: str) -> Any:
        """GET `path` of the queue's Flower through its Service, with its login; the decoded JSON."""
        auth = (self.secret("flower-auth", "username"), self.secret("flower-auth", "password"))
        answer = service_get(self.cluster.sandbox.netns_path, f"{self.name}-flower", self.namespace, 5555,
                             path, auth=auth)
        assert answer.status == 200, answer
        return json.loads(answer.body)

    def flower_tasks(self) -> list[dict[str, Any]]:
        return list(self.flower("/api/tasks?limit=5000").values())

    def metrics(self) -> str:
        answer = service_get(self.cluster.sandbox.netns_path, f"{self.name}-metrics", self.namespace, 9808,
                             "/metrics")
        assert answer.status == 200, answer
        return answer.body

    def counted(self, kind: str, task: str) -> float:
        """bookgen_tasks_<kind>_total of one task, summed over queues: counted in Redis by the workers
        as tasks end, so it survives a Redis restart (the AOF) and a stopped worker."""
        total = 0.0
        for line in self.metrics().splitlines():
            if line.startswith(f"bookgen_tasks_{kind}_total{{") and f'task="{task}"' in line:
                total += float(line.rsplit(" ", 1)[1])
        return total

    def tasks_of_job(self, job_id: str) -> list[dict[str, Any]]:
        """Every task Flower saw of one job (they share the job's start task's root id)."""
        tasks = self.flower_tasks()
        roots = {t["root_id"] for t in tasks if t.get("name") == "bookgen.job.start" and job_id in t["args"]}
        return [t for t in tasks if t.get("root_id") in roots]


def restricted_namespace(cluster: Cluster, prefix: str) -> str:
    import uuid

    from tests.cluster.conftest import RESTRICTED

    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    cluster.core.create_namespace({"metadata": {"name": name, "labels": RESTRICTED}})
    wait_for(lambda: any(sa.metadata.name == "default" for sa in cluster.core.list_namespaced_service_account(
        name).items), timeout=30, what=f"the default ServiceAccount of {name}")
    return name


def delete_queue_and_namespace(cluster: Cluster, queue: Queue) -> None:
    """Delete the queue and its namespace, and wait until they are gone: on a two-core node the next
    test's pods cannot be scheduled while these still hold their CPU requests. The namespace is scanned
    for secrets first, while the queue's pods and their logs are still there."""
    secret_scan.scan_namespace(cluster, queue.namespace)
    kubectl(cluster, "delete", "bookgenqueue", queue.name, "-n", queue.namespace, "--wait=true", "--timeout=60s",
            check=False)
    kubectl(cluster, "delete", "namespace", queue.namespace, "--wait=true", "--timeout=90s", check=False)


@contextlib.contextmanager
def queue_in_namespace(cluster: Cluster, prefix: str, name: str = "books") -> Iterator[Queue]:
    """A Queue handle in a fresh restricted namespace; on exit the queue and namespace are deleted."""
    q = Queue(cluster, restricted_namespace(cluster, prefix), name)
    try:
        yield q
    finally:
        delete_queue_and_namespace(cluster, q)


@contextlib.contextmanager
def scratch_namespace(cluster: Cluster, prefix: str) -> Iterator[str]:
    """A fresh restricted namespace, deleted (scanned for secrets first) on exit."""
    name = restricted_namespace(cluster, prefix)
    try:
        yield name
    finally:
        cluster.delete_namespace(name)
