"""The operator's autoscaling: each BookGenQueue's Autoscaler, built from its spec and run on the shared
scheduler for as long as the queue's daemon (daemon.py) lives. Nothing here imports kopf.

- one scheduler (OperatorContext.scheduler, a SchedulerThread: the lanes run on a thread and event
  loop of their own, so a busy kopf loop does not delay the polls) and one replica cache per process;
- the watch of worker Deployments (handlers.py) feeds that cache, so a poll reads no Deployment;
- the daemon calls `run_scheduled(...)`: it registers the queue's Autoscaler and returns when the queue
  goes away or its spec changes.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor

from bookgen_operator.controller.actuator import KubernetesPlatform, ReplicaCache, WatchedPlatform
from bookgen_operator.controller.client import Kube
from bookgen_operator.controller.redis_access import AccessRedisSource, RedisAccess
from bookgen_operator.controller.scheduler import Scheduler, SchedulerThread
from bookgen_operator.controller.status_reporter import StatusReporter, status_reporter
from bookgen_operator.core.autoscaler.loop import Autoscaler, PauseCheck
from bookgen_operator.core.objects import JSON
from bookgen_operator.core.resources.labels import metrics_name
from bookgen_operator.core.resources.monitoring import prometheus_scope
from bookgen_operator.core.spec import QueueSpec
from bookgen_operator.sources.select import make_source


def source_options(spec: QueueSpec) -> JSON:
    """Where this BookGenQueue's metrics are, for make_source: its Prometheus series (scoped to its own
    namespace and metrics Service: two queues in a namespace share queue names) or its exporter."""
    return {
        "prometheus_url": spec.autoscaling.prometheus_url,
        "labels": prometheus_scope(spec),
        "endpoint_url": f"http://{metrics_name(spec)}.{spec.namespace}.svc:{spec.metrics.port}/metrics",
    }


def build(spec: QueueSpec, kube: Kube, access: RedisAccess, replicas: ReplicaCache,
          paused: PauseCheck | None = None) -> Autoscaler:
    """The Autoscaler of one BookGenQueue: its source (an asyncio Redis client on the scheduler's loop), the
    Kubernetes platform behind the watch cache, and the status reporter."""
    source = make_source(spec.autoscaling.source, **source_options(spec),
                         redis=lambda: AccessRedisSource(access, asynchronous=True))
    inner = KubernetesPlatform(kube, spec.namespace, spec.name, access.registry)
    platform = WatchedPlatform(inner, replicas, spec.namespace, inner.deployment)
    return Autoscaler(spec.pools, source, platform, on_decision=status_reporter(spec, kube), paused=paused)


async def run_scheduled(spec: QueueSpec, kube: Kube, stopped: asyncio.Event, scheduler: Scheduler | SchedulerThread,
                        replicas: ReplicaCache, executor: Executor | None = None,
                        paused: PauseCheck | None = None) -> None:
    """Schedule this BookGenQueue's autoscaler on the shared scheduler until `stopped` is set.

    A plain Scheduler runs in the caller's loop (tests, benches); a SchedulerThread in its own, so
    the lane and everything it created (the status reporter's write) are added and ended there.
    `executor`: where the blocking worker-registry reads run (None: the loop's default executor);
    `paused`: asked every round whether the queue is paused (daemon.py reads its annotations)."""
    access = RedisAccess(spec, kube, executor)
    autoscaler = build(spec, kube, access, replicas, paused)
    key = f"{spec.namespace}/{spec.name}"
    if isinstance(scheduler, SchedulerThread):
        await scheduler.add(key, autoscaler)
    else:
        scheduler.add(key, autoscaler)
    try:
        await stopped.wait()
    finally:
        if isinstance(scheduler, SchedulerThread):
            await asyncio.shield(scheduler.call_async(_end, scheduler.scheduler, key, autoscaler))
        else:
            await asyncio.shield(_end(scheduler, key, autoscaler))
        access.drop()


async def _end(scheduler: Scheduler, key: str, autoscaler: Autoscaler) -> None:
    scheduler.remove(key)
    await autoscaler.source.close()
    if isinstance(autoscaler.on_decision, StatusReporter):
        await autoscaler.on_decision.close()
