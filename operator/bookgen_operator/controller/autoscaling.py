"""The operator's autoscaling on the shared scheduler: what `run_queue_autoscaler` does, for many queues at once.

Wiring (handlers.py, kept to the lead's merge; nothing here imports kopf):

- one `SCHEDULER` (a SchedulerThread: the lanes run on a thread and event loop of their own, so a
  busy kopf loop does not delay the polls) and one `REPLICAS` cache per operator process;
- a watch of worker Deployments (label `app.kubernetes.io/component=worker`) feeds `REPLICAS`:
  `REPLICAS.seen(namespace, name, spec.replicas)` on ADDED/MODIFIED, `REPLICAS.gone(...)` on DELETED;
- the per-BookGenQueue daemon calls `run_scheduled(spec, kube, stopped)` instead of
  `run_queue_autoscaler(spec, kube, stopped)`: it registers the queue's Autoscaler and returns
  when the queue goes away (or its spec changes, as today).
"""

from __future__ import annotations

import asyncio
from typing import Any

from bookgen_operator.controller.actuator import (
    AccessRedisSource,
    KubernetesPlatform,
    RedisAccess,
    StatusReporter,
    source_options,
    status_reporter,
)
from bookgen_operator.controller.scheduler import (
    ReplicaCache,
    Scheduler,
    SchedulerThread,
    WatchedPlatform,
)
from bookgen_operator.core.autoscaler.loop import Autoscaler

#: The operator's one scheduler, on a thread of its own (see autoscaler/scheduler.py).
SCHEDULER = SchedulerThread()
REPLICAS = ReplicaCache()


def build(spec: Any, kube: Any, access: RedisAccess, replicas: ReplicaCache = REPLICAS) -> Autoscaler:
    """The Autoscaler of one BookGenQueue: its source (an asyncio Redis client on the scheduler's loop), the
    Kubernetes platform behind the watch cache, and the status reporter."""
    from bookgen_operator.sources.select import make_source

    source = make_source(spec.autoscaling.source, **source_options(spec),
                         redis=lambda: AccessRedisSource(access, asynchronous=True))
    inner = KubernetesPlatform(kube, spec.namespace, spec.name, access.registry)
    platform = WatchedPlatform(inner, replicas, spec.namespace, inner.deployment)
    return Autoscaler(spec.pools, source, platform, on_decision=status_reporter(spec, kube))


async def run_scheduled(spec: Any, kube: Any, stopped: Any, scheduler: Scheduler | SchedulerThread = SCHEDULER,
                        replicas: ReplicaCache = REPLICAS) -> None:
    """Schedule this BookGenQueue's autoscaler on the shared scheduler until `stopped` is set.

    A plain Scheduler runs in the caller's loop (tests, benches); a SchedulerThread in its own, so
    the lane and everything it created (the status reporter's write) are added and ended there."""
    access = RedisAccess(spec, kube)
    autoscaler = build(spec, kube, access, replicas)
    key = f"{spec.namespace}/{spec.name}"
    if isinstance(scheduler, SchedulerThread):
        await scheduler.add(key, autoscaler)
    else:
        scheduler.add(key, autoscaler)
    try:
        await stopped.wait()
    finally:
        if isinstance(scheduler, SchedulerThread):
            await asyncio.shield(scheduler.call(_end, scheduler.scheduler, key, autoscaler))
        else:
            await asyncio.shield(_end(scheduler, key, autoscaler))
        access.drop()


async def _end(scheduler: Scheduler, key: str, autoscaler: Autoscaler) -> None:
    scheduler.remove(key)
    await autoscaler.source.close()
    if isinstance(autoscaler.on_decision, StatusReporter):
        await autoscaler.on_decision.close()
