"""The operator's `on_decision`: the autoscaler's decisions as Events, pool status and replica gauges."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from bookgen_operator.controller import events, opmetrics
from bookgen_operator.controller.client import RESOURCES, Kube, KubeError
from bookgen_operator.core.autoscaler.loop import PoolStatus
from bookgen_operator.core.objects import JSON, Body
from bookgen_operator.core.resources.labels import metrics_name
from bookgen_operator.core.spec import QueueSpec

log = logging.getLogger(__name__)

BGQ = RESOURCES[("bookgen.io/v1alpha1", "BookGenQueue")]


class StatusReporter:
    """on_decision for the operator: an Event per scaling, one status patch per queue when something changed.

    The round never waits for the API server: a decision that changes a pool's block (or scales it)
    schedules one write task for the queue, which runs after the round and patches the blocks of every
    pool that differs from what was last written, and the queue's totals, in one request. Awaiting the
    patch inside the round held the scheduler's slot for an API round trip: with 250 queues, rounds
    queued behind the reconciles' requests and the 1 s polls were missed (0 % on time). Demand moves
    every second under load; the status need not: a pool's block is rewritten at most every
    `min_interval` seconds unless it scaled. Nothing changed: no request at all.
    """

    def __init__(self, spec: QueueSpec, kube: Kube, *, min_interval: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.spec, self.kube, self.min_interval, self.clock = spec, kube, min_interval, clock
        self.owner = {"apiVersion": "bookgen.io/v1alpha1", "kind": "BookGenQueue",
                      "metadata": {"name": spec.name, "namespace": spec.namespace, "uid": spec.uid}}
        self._gauges = opmetrics.pool_gauges(spec.namespace, metrics_name(spec))
        #: pool -> (block without its age, when written): what the API server has.
        self.written: dict[str, tuple[Body, float]] = {}
        self.latest: dict[str, PoolStatus] = {}
        self._due: set[str] = set()  # pools whose block must be written
        self._task: asyncio.Task[None] | None = None
        #: Status patches sent (for tests and the offline bench).
        self.patches = 0

    @staticmethod
    def _comparable(block: Body) -> JSON:
        return {k: v for k, v in block.items() if k != "observationAgeSeconds"}

    async def __call__(self, status: PoolStatus) -> None:
        self.latest[status.pool] = status
        self._gauges(status.pool, status.desired, status.current)
        if status.scaled:
            events.normal(self.owner, "Scaled", status.reason)
        elif status.error:
            events.warning(self.owner, "ScalingFailed", status.reason)
        before = self.written.get(status.pool)
        if before and not status.scaled:
            if before[0] == self._comparable(status.to_status()):
                return  # nothing changed: no request
            if self.clock() - before[1] < self.min_interval:
                return  # changed, but written moments ago: a later round writes it
        self._due.add(status.pool)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._write(), name=f"status of {self.spec.name}")

    async def _write(self) -> None:
        await asyncio.sleep(0)  # the rest of the round reports first: one patch for all its pools
        while self._due:
            blocks = {pool: s.to_status() for pool, s in self.latest.items()}
            # Every pool that differs from what was written goes along (free in the same request).
            pools = {pool: block for pool, block in blocks.items() if pool in self._due
                     or self._comparable(block) != (self.written.get(pool) or ({}, 0.0))[0]}
            self._due.clear()
            patch: JSON = {"pools": pools}
            known = [s for s in self.latest.values() if s.pending is not None]
            if known:
                patch["pending"] = sum(s.pending or 0 for s in known)
                patch["inFlight"] = sum(s.in_flight or 0 for s in known)
            try:
                self.patches += 1
                await self.kube.patch(BGQ, self.spec.namespace, self.spec.name, {"status": patch},
                                      subresource="status")
            except (KubeError, OSError) as exc:
                log.info("could not write autoscaling status of %s: %s", self.spec.name, exc)
                return  # the next round that still differs tries again
            except Exception:  # reporting is best effort (nobody awaits this task): log, scaling goes on
                log.exception("writing the autoscaling status of %s failed", self.spec.name)
                return
            now = self.clock()
            for pool, block in pools.items():
                self.written[pool] = (self._comparable(block), now)

    async def close(self) -> None:
        """Drop a write not yet done (the queue went away, or a new reporter took over)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def status_reporter(spec: QueueSpec, kube: Kube, *, min_interval: float = 5.0,
                    clock: Callable[[], float] = time.monotonic) -> StatusReporter:
    return StatusReporter(spec, kube, min_interval=min_interval, clock=clock)
