"""Acceptance 2: the autoscaler against the Kubernetes API emulator with a real Redis.

- A burst of 500 real Celery messages on the content pool's queue leads to ONE Deployment patch,
  straight to the policy's full target, at a 1 s poll interval (the time itself is measured in
  bench/autoscale_latency.py; here only a generous deadline).
- Draining the backlog scales in only after the scale-down window, never below the busy workers,
  and only after the busy pods carry a high `controller.kubernetes.io/pod-deletion-cost` (so the
  ReplicaSet controller, modelled here by its documented victim order, removes idle pods only).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis
from bookgen_operator.controller.actuator import BUSY_COST, DELETION_COST, KubernetesPlatform
from bookgen_operator.controller.client import Connection, Kube
from bookgen_operator.controller.status_reporter import status_reporter
from bookgen_operator.core.autoscaler.loop import Autoscaler, PoolStatus
from bookgen_operator.core.autoscaler.policy import Policy
from bookgen_operator.core.autoscaler.source import PoolMetrics
from bookgen_operator.sources.redis_source import RedisSource
from bookgen_worker.app import bookgen_settings
from bookgen_worker.metrics import measure
from bookgen_worker.metrics.workers import WorkerInfo, publish, read_workers
from bookgen_worker.queues import priority_list_keys
from celery import Celery

from tests.operator.conftest import BGQ, OBSERVED_CALLS, _check_status_writes, eventually
from tests.support.k8s_emulator import K8sEmulator

NS, CR, POOL = "books", "bq", "content"
DEPLOYMENT = f"{CR}-worker-{POOL}"
QUEUES = ("content_generation",)
WINDOW = 3.0
POLICY = Policy(min_replicas=2, max_replicas=80, target_per_slot=5, scale_down_window=WINDOW, poll_interval=1.0)
FULL_TARGET = 50  # ceil(500 / (5 per slot * 2 slots))
BUSY = ("bq-worker-content-7", "bq-worker-content-21", "bq-worker-content-40")


@dataclass(frozen=True)
class Pool:
    name: str
    queues: tuple[str, ...]
    concurrency: int
    policy: Policy


@dataclass(frozen=True)
class Spec:  # what status_reporter needs of a QueueSpec
    name: str = CR
    namespace: str = NS
    uid: str = ""


class GatedSource:
    """The real Redis source, paused while the test enqueues so the burst lands between two polls."""

    def __init__(self, inner: RedisSource) -> None:
        self.inner = inner
        self.gate = asyncio.Lock()

    async def observe(self, pools: Sequence[Any]) -> dict[str, PoolMetrics | None]:
        async with self.gate:
            return await self.inner.observe(pools)

    async def close(self) -> None:
        await self.inner.close()


def pod(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NS, "labels": {
                "app.kubernetes.io/name": "bookgen", "app.kubernetes.io/instance": CR,
                "app.kubernetes.io/component": "worker", "bookgen.io/pool": POOL}},
            "spec": {"containers": [{"name": "worker", "image": "bookgen"}]}}


def deployment(replicas: int) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": "bookgen", "app.kubernetes.io/instance": CR,
              "app.kubernetes.io/component": "worker", "bookgen.io/pool": POOL}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": DEPLOYMENT, "namespace": NS, "labels": labels},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "worker", "image": "bookgen"}]}}}}


def replicaset_victims(pods: list[dict[str, Any]], remove: int) -> list[str]:
    """Which pods the ReplicaSet controller deletes first (all pods equally ready and old): lowest cost."""
    def cost(p: dict[str, Any]) -> int:
        return int((p["metadata"].get("annotations") or {}).get(DELETION_COST, "0"))
    return [p["metadata"]["name"] for p in sorted(pods, key=cost)[:remove]]


def deployment_patches(emulator: K8sEmulator) -> list[Any]:
    return [c for c in emulator.calls if c.verb == "patch" and c.resource == "deployments"]


async def test_a_burst_is_answered_in_one_patch_and_scale_in_spares_busy_pods(
        emulator: K8sEmulator, celery_app: Celery, redis_client: redis.Redis) -> None:
    settings = bookgen_settings(celery_app)
    emulator.write_hooks.append(_check_status_writes)  # status patches must survive the CRD schema
    await emulator.create_object("apps/v1/deployments", deployment(POLICY.min_replicas))
    await emulator.create_object(BGQ, {"apiVersion": "bookgen.io/v1alpha1", "kind": "BookGenQueue",
                                       "metadata": {"name": CR, "namespace": NS}, "spec": {}})
    for n in range(POLICY.min_replicas):
        await emulator.create_object("v1/pods", pod(f"{DEPLOYMENT}-{n}"))
    kube = Kube(lambda: Connection(server=emulator.base_url))

    async def registry() -> list[tuple[str, str, int]]:
        workers = await asyncio.to_thread(read_workers, redis_client, settings)
        return [(w.pool, w.pod, w.busy) for w in workers]

    source = GatedSource(RedisSource(redis_client, settings))
    platform = KubernetesPlatform(kube, NS, CR, registry)
    decisions: list[PoolStatus] = []
    report = status_reporter(Spec(), kube, min_interval=0)

    async def on_decision(status: PoolStatus) -> None:
        decisions.append(status)
        await report(status)

    autoscaler = Autoscaler([Pool(POOL, QUEUES, 2, POLICY)], source, platform, on_decision=on_decision)
    stop = asyncio.Event()
    loop_task = asyncio.create_task(autoscaler.run(stop))
    try:
        await eventually(lambda: decisions, timeout=10, what="the first decision")
        assert not deployment_patches(emulator), "an idle pool at minReplicas must not be patched"

        # ---- the burst: 500 real Celery messages (no worker consumes them)
        async with source.gate:
            await asyncio.to_thread(lambda: [celery_app.send_task("bookgen.generate_chapter", args=["Ada", n])
                                             for n in range(500)])
        assert measure(redis_client, settings, QUEUES).demand(QUEUES) == 500
        seen = len(decisions)
        await eventually(lambda: emulator.get_object("apps/v1/deployments", NS, DEPLOYMENT)["spec"]["replicas"]
                         == FULL_TARGET, timeout=15, what="the Deployment at the full target")
        await eventually(lambda: len(decisions) >= seen + 3, timeout=10, what="three more rounds")
        patches = deployment_patches(emulator)
        assert len(patches) == 1, f"expected one Deployment patch, got {[p.body for p in patches]}"
        assert patches[0].body == {"spec": {"replicas": FULL_TARGET}}
        status = emulator.get_object(BGQ, NS, CR)["status"]["pools"][POOL]
        assert status["desiredReplicas"] == FULL_TARGET and status["pending"] == 500
        assert "lastScaleTime" in status
        scaled = [d for d in decisions if d.scaled]
        assert [d.reason for d in scaled] == [
            f"{POOL}: 2 → {FULL_TARGET} (500 pending + 0 in flight, target 5 per slot, 2 slots per worker)"]

        # ---- the ReplicaSet controller's part: the pods exist; three of them run tasks
        for n in range(POLICY.min_replicas, FULL_TARGET):
            await emulator.create_object("v1/pods", pod(f"{DEPLOYMENT}-{n}"))
        for n in range(FULL_TARGET):
            name = f"{DEPLOYMENT}-{n}"
            publish(redis_client, settings, WorkerInfo(f"{POOL}@{name}", POOL, name, 1, QUEUES, 2,
                                                       1 if name in BUSY else 0, time.time()))

        # ---- drain the backlog
        marks_before = len(emulator.calls)
        redis_client.delete(*priority_list_keys("content_generation", settings.priority_steps,
                                                settings.priority_separator, settings.global_keyprefix))
        drained = time.monotonic()
        await eventually(lambda: len(deployment_patches(emulator)) == 2, timeout=15, what="the scale-in patch")
        waited = time.monotonic() - drained
        # The last full-target recommendation came at most one poll before the drain was seen.
        assert waited >= WINDOW - POLICY.poll_interval, f"scaled in after {waited:.1f}s, inside the {WINDOW}s window"
        scale_in = deployment_patches(emulator)[1]
        assert scale_in.body == {"spec": {"replicas": len(BUSY)}}  # min 2, but 3 workers are busy

        pods = emulator.objects_of("v1/pods", NS)
        marked = {p["metadata"]["name"] for p in pods if (p["metadata"].get("annotations") or {}).get(DELETION_COST)}
        assert marked == set(BUSY)
        assert all(p["metadata"]["annotations"][DELETION_COST] == BUSY_COST for p in pods
                   if p["metadata"]["name"] in BUSY)
        # The marks were written before the Deployment shrank.
        later = emulator.calls[marks_before:]
        order = [c.resource for c in later if c.verb == "patch" and c.resource in ("pods", "deployments")]
        assert order == ["pods"] * len(BUSY) + ["deployments"]
        victims = replicaset_victims(pods, FULL_TARGET - len(BUSY))
        assert not set(victims) & set(BUSY), "the ReplicaSet would remove a busy pod"
        assert not emulator.hook_errors, f"status writes the API server would prune: {emulator.hook_errors}"
    finally:
        stop.set()
        await asyncio.wait_for(loop_task, 10)
        await kube.close()
        for call in emulator.calls:  # for operator/api-calls.json (RBAC of the chart)
            OBSERVED_CALLS.add((call.verb, call.group, call.resource, call.subresource or ""))
