"""One replay of bench/real_autoscale.py: a fresh BookGenQueue in a namespace of its own, its content
pool scaled by one controller, the compressed trace published into its Redis on time, and the raw
records (bench/real_runs.py) collected while it runs.

The pool's pods run the product image unchanged; the task they run (`bookgen.bench.sleep`,
bench/bench_sleep.py) comes from a ConfigMap mounted on PYTHONPATH and named in
BOOKGEN_EXTRA_TASK_MODULES. For a KEDA run the queue carries `bookgen.io/paused: "true"`: our
autoscaler then writes nothing (no replicas, no pod-deletion-cost) and the reconciler leaves
`spec.replicas` alone, so the HPA that KEDA makes is the pool's only scaler, on the same Deployment
(same pods, same grace period).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from bookgen_worker.app import configure_app, create_app
from bookgen_worker.config import settings_from_env
from bookgen_worker.queues import CONTENT_GENERATION, HIGH_PRIORITY
from kubernetes import client, config

from bench import bench_sleep
from bench.peers import keda_objects
from bench.real_runs import Attempt, PodLife
from bench.traces import Arrival
from tests.cluster import prometheus_operator
from tests.cluster.conftest import RESTRICTED, Cluster, kubectl
from tests.cluster.product import GROUP, PLURAL, VERSION, Queue, delete_queue_and_namespace, ready
from tests.support.waiting import wait_for

QUEUE = "bench"
POOL = "content"
TASK_DIR = "/opt/bench-tasks"
CONTENT_QUEUES = [CONTENT_GENERATION, HIGH_PRIORITY]  # what the content pool consumes, in that order


@dataclass(frozen=True)
class Controller:
    label: str  # the row's name
    kind: str  # "ours" | "keda"
    source: str = "redis"  # ours: the autoscaler's source
    tuned: bool = False  # keda: like for like, or KEDA's defaults
    list_length: float = 5.0  # keda: the target per replica


@dataclass
class Records:
    published: dict[str, float] = field(default_factory=dict)
    starts: list[Attempt] = field(default_factory=list)
    ends: list[Attempt] = field(default_factory=list)
    pods: list[PodLife] = field(default_factory=list)
    replicas: list[tuple[float, int]] = field(default_factory=list)
    t0: float = 0.0
    end: float = 0.0
    grace: float = 0.0


def _pools(max_replicas: int, concurrency: int) -> list[dict[str, Any]]:
    fixed = {"minReplicas": 1, "maxReplicas": 1}
    return [
        {"name": POOL, "queues": CONTENT_QUEUES, "concurrency": concurrency, "minReplicas": 0,
         "maxReplicas": max_replicas, "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}}},
        {"name": "validation", "queues": ["validation"], "concurrency": 1, "minReplicas": 0, "maxReplicas": 1},
        {"name": "export", "queues": ["export"], "concurrency": 1, "minReplicas": 0, "maxReplicas": 1},
        {"name": "monitoring", "queues": ["monitoring", "default"], "concurrency": 1, **fixed},
    ]  # fmt: skip


def queue_body(controller: Controller, max_replicas: int, concurrency: int) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "beat": {"enabled": False}, "flower": {"enabled": False},
        "pools": _pools(max_replicas, concurrency),
        "env": [{"name": "PYTHONPATH", "value": TASK_DIR},
                {"name": "BOOKGEN_EXTRA_TASK_MODULES", "value": Path(bench_sleep.__file__).stem}],
        "volumes": [{"name": "bench-tasks", "configMap": {"name": "bench-tasks"}}],
        "volumeMounts": [{"name": "bench-tasks", "mountPath": TASK_DIR, "readOnly": True}],
    }  # fmt: skip
    if controller.source == "prometheus":
        spec["autoscaling"] = {"source": "prometheus", "prometheusUrl": prometheus_operator.URL}
    annotations = {"bookgen.io/paused": "true"} if controller.kind == "keda" else {}
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "BookGenQueue",
            "metadata": {"name": QUEUE, "annotations": annotations}, "spec": spec}


def _stamp(value: Any) -> float:
    if isinstance(value, dt.datetime):
        return value.timestamp()
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


class Sampler(threading.Thread):
    """Every half second: the pool's pods (created, first Ready, gone) and the Deployment's replicas."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        super().__init__(daemon=True)
        self.api = config.new_client_from_config(str(cluster.kubeconfig))
        self.namespace = namespace
        self.stopped = threading.Event()
        self.pods: dict[str, dict[str, float | None]] = {}
        self.replicas: list[tuple[float, int]] = []
        self.errors = 0

    def sample(self) -> None:
        now = time.time()
        core, apps = client.CoreV1Api(self.api), client.AppsV1Api(self.api)
        sel = f"app.kubernetes.io/instance={QUEUE},bookgen.io/pool={POOL}"
        seen = set()
        for pod in core.list_namespaced_pod(self.namespace, label_selector=sel).items:
            name = pod.metadata.name
            seen.add(name)
            life = self.pods.setdefault(name, {"created": _stamp(pod.metadata.creation_timestamp), "ready": None,
                                               "gone": None})
            if life["ready"] is None and ready(pod):
                life["ready"] = now
        for name, life in self.pods.items():
            if name not in seen and life["gone"] is None:
                life["gone"] = now
        spec = apps.read_namespaced_deployment(f"{QUEUE}-worker-{POOL}", self.namespace).spec.replicas or 0
        if not self.replicas or self.replicas[-1][1] != spec:
            self.replicas.append((now, int(spec)))

    def run(self) -> None:
        while not self.stopped.wait(0.5):
            try:
                self.sample()
            except (client.ApiException, OSError):
                self.errors += 1  # the next sample catches up; a pod's life is kept from its first sighting

    def lives(self) -> list[PodLife]:
        return [PodLife(n, float(v["created"] or 0), v["ready"], v["gone"]) for n, v in self.pods.items()]

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=10)
        self.api.close()


def _attempts(client_: redis.Redis, key: str) -> list[Attempt]:
    return [Attempt(**json.loads(raw)) for raw in client_.lrange(key, 0, -1)]


def prepare(cluster: Cluster, controller: Controller, max_replicas: int, concurrency: int) -> Queue:
    """A restricted namespace with the task's ConfigMap and the queue (plus KEDA's objects); returns when
    the queue is Ready, the content pool is at 0 and the controller can read its metrics."""
    slug = "-".join("".join(c if c.isalnum() else " " for c in controller.label.lower()).split())[:30].strip("-")
    ns = f"ra-{slug}-{uuid.uuid4().hex[:5]}"
    cluster.core.create_namespace({"metadata": {"name": ns, "labels": RESTRICTED}})
    wait_for(lambda: any(sa.metadata.name == "default" for sa in cluster.core.list_namespaced_service_account(
        ns).items), timeout=30, what=f"the default ServiceAccount of {ns}")
    queue = Queue(cluster, ns, QUEUE)
    cluster.core.create_namespaced_config_map(ns, {"metadata": {"name": "bench-tasks"}, "data": {
        Path(bench_sleep.__file__).name: Path(bench_sleep.__file__).read_text()}})
    cluster.custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL,
                                                   queue_body(controller, max_replicas, concurrency))
    queue.wait_ready(timeout=300)
    if controller.kind == "keda":
        settings = settings_from_env({})
        objects = [keda_objects.trigger_authentication(ns, QUEUE), keda_objects.scaled_object(
            ns, QUEUE, queues=CONTENT_QUEUES, steps=settings.priority_steps, separator=settings.priority_separator,
            tuned=controller.tuned, list_length=controller.list_length, max_replicas=max_replicas)]
        kubectl(cluster, "apply", "-f", "-", input="\n".join(json.dumps(o) for o in objects))
        kubectl(cluster, "wait", "-n", ns, f"scaledobject/{keda_objects.SCALED_OBJECT}", "--for=condition=Ready",
                "--timeout=120s")
    wait_for(lambda: queue.replicas(POOL) == 0 and not queue.pods(POOL), timeout=120, interval=1,
             what="the content pool at 0 before the trace")
    return queue


def replay(cluster: Cluster, queue: Queue, trace: list[Arrival], *, window: float, tail: float, drain: float,
           progress: Callable[[str], None]) -> Records:
    records = Records()
    dep = cluster.apps.read_namespaced_deployment(f"{QUEUE}-worker-{POOL}", queue.namespace)
    records.grace = float(dep.spec.template.spec.termination_grace_period_seconds or 30)
    sampler = Sampler(cluster, queue.namespace)
    with queue.redis_port() as port:
        url = queue.redis_url(port)
        settings = settings_from_env({"REDIS_URL": url})
        app = create_app(settings)
        configure_app(app, settings)
        store = redis.Redis.from_url(url, socket_timeout=30)
        store.delete(bench_sleep.STARTS, bench_sleep.ENDS)
        sampler.start()
        records.t0 = t0 = time.time() + 1.0
        try:
            for i, arrival in enumerate(trace):
                delay = t0 + arrival.at - time.time()
                if delay > 0:
                    time.sleep(delay)  # the load generator's schedule, not a synchronisation
                key = f"t{i}"
                records.published[key] = time.time()
                app.send_task(bench_sleep.NAME, args=[key, round(arrival.duration, 3)], queue=CONTENT_GENERATION,
                              routing_key=CONTENT_GENERATION, priority=arrival.priority)
                if i % 25 == 0:
                    progress(f"  t={time.time() - t0:6.1f} s  published {i + 1}/{len(trace)}  "
                             f"replicas {sampler.replicas[-1][1] if sampler.replicas else '?'}")
            records.end = _wait_for_the_end(store, t0, len(trace), window + tail, drain, sampler, progress)
        finally:
            sampler.stop()
            store.close()
            app.close()
    records.starts, records.ends = _collect(queue)
    records.pods = sampler.lives()
    records.replicas = sampler.replicas
    return records


def _finished(store: redis.Redis) -> int | None:
    try:
        return int(store.llen(bench_sleep.ENDS))
    except (redis.ConnectionError, redis.TimeoutError):
        return None  # the port-forward or Redis is slow (a loaded machine): ask again at the next poll


def _wait_for_the_end(store: redis.Redis, t0: float, tasks: int, horizon: float, drain: float, sampler: Sampler,
                      progress: Callable[[str], None]) -> float:
    """The run ends at t0 + horizon once every task finished, or at t0 + horizon + drain regardless."""
    last = -1.0
    while True:
        now = time.time()
        done = _finished(store)
        if now >= t0 + horizon and done is not None and done >= tasks:
            return now
        if now >= t0 + horizon + drain:
            progress(f"  gave up waiting {drain:g} s after the tail: {tasks - (done or 0)} tasks not finished")
            return now
        if now - last >= 20:
            last = now
            progress(f"  t={now - t0:6.1f} s  finished {'?' if done is None else done}/{tasks}  "
                     f"replicas {sampler.replicas[-1][1] if sampler.replicas else '?'}")
        time.sleep(2)  # polling the run's progress: it ends on a deadline, not on this sleep


def _collect(queue: Queue, attempts: int = 5) -> tuple[list[Attempt], list[Attempt]]:
    """Every attempt's start and end, through a fresh port-forward (the first may have died under load)."""
    for attempt in range(attempts):
        try:
            with queue.redis_port() as port:
                store = redis.Redis.from_url(queue.redis_url(port), socket_timeout=60)
                try:
                    return _attempts(store, bench_sleep.STARTS), _attempts(store, bench_sleep.ENDS)
                finally:
                    store.close()
        except (redis.ConnectionError, redis.TimeoutError, AssertionError):
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def teardown(cluster: Cluster, queue: Queue) -> None:
    kubectl(cluster, "delete", "scaledobject", keda_objects.SCALED_OBJECT, "-n", queue.namespace,
            "--ignore-not-found", "--timeout=60s", check=False)
    delete_queue_and_namespace(cluster, queue)


def unbounded(x: float) -> bool:
    return math.isinf(x)
