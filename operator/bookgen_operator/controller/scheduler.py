"""One scheduler for the autoscalers of every BookGenQueue: bounded, concurrent, and honest about lateness.

The operator used to run one loop per BookGenQueue that handled its pools one after another, each
with a GET of its Deployment every poll: 30 queues x 4 pools achieved 62 % of the 1 s polls and
nothing said so. Here:

- every registered Autoscaler (one per BookGenQueue, all its pools) gets a lane on a fixed schedule
  (its poll interval, no drift); all lanes share a semaphore, so at most `max_concurrent` rounds run
  at once and a slow queue delays only itself;
- lanes are spread over the interval (the k-th lane starts k x 0.618... intervals in, modulo one
  interval: evenly spaced for any number of lanes): the operator starts the daemons of all its
  queues at once, and 250 lanes ticking together made a burst of 250 rounds every second whose
  tail waited ~0.3 s for the executor (4 % of polls late offline); spread, each round runs alone;
- one round of a queue is one `source.observe()` for all its pools (one Redis round trip with the
  Redis source, whose busy pods then also come from that snapshot);
- a poll that starts more than `late_after` seconds after its tick counts as late, ticks skipped
  by an overrun as missed: `bookgen_operator_autoscaler_polls_total{result=on_time|late|missed}`
  and the lag histogram tell whether the operator keeps up;
- an idle queue (nothing pending or in flight in any pool, no change asked) backs off, doubling its
  interval up to `idle_max_interval`: 250 idle queues cost a fraction of 250 polls per second. The
  first task is seen within that interval, so it bounds the wake-up latency from idle;
- replicas come from a cache the operator's watch of its Deployments fills (actuator.py: ReplicaCache,
  WatchedPlatform): a poll reads no Deployment; the Kubernetes platform GETs one only before a
  write (scale-in must compare with the live count);
- the Redis source polls through a `redis.asyncio` client on the scheduler's own loop: with its
  blocking calls on 8 executor threads, 250 queues made ten threads fight for the GIL and the threads
  took over half of the operator's CPU (py-spy). What still blocks (the worker registry, read only
  when a source cannot say which pods are busy) runs on a dedicated bounded executor
  (OperatorContext.redis_executor), not on the default one that kopf and everything else share;
- in the operator the scheduler runs on a thread and event loop of its own (SchedulerThread): on
  kopf's loop, a poll waited behind whatever was ready there (reconciles decoding LIST answers,
  kopf's own processing), and with 250 queues most polls started more than 0.25 s late although
  the process used two thirds of a core. On its own loop a poll waits at most for the GIL (handed
  over every 5 ms). Tasks created there keep the context they were added from, so kopf's Events
  (kopf.event, which posts across threads) still work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from prometheus_client import Counter, Histogram

from bookgen_operator.controller import loops
from bookgen_operator.core.autoscaler.loop import Autoscaler, PoolStatus

log = logging.getLogger(__name__)

POLLS = Counter("bookgen_operator_autoscaler_polls_total",
                "Autoscaler polls by outcome: on_time, late (started after late_after), missed (skipped ticks).",
                ["result"])
POLL_LAG = Histogram("bookgen_operator_autoscaler_poll_lag_seconds", "How late a poll started after its tick.",
                     buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
ROUND_SECONDS = Histogram("bookgen_operator_autoscaler_round_seconds", "Duration of one round of a BookGenQueue.",
                          buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))

#: The fractional part of the golden ratio: lane k starts at (k * GOLDEN) mod 1 of its interval, so any number
#: of lanes is spread evenly (no two close together), whatever order the queues come in.
GOLDEN = 0.6180339887498949

@dataclass
class PollStats:
    on_time: int = 0
    late: int = 0
    missed: int = 0
    lags: list[float] = field(default_factory=list)

    def share_on_time(self) -> float:
        total = self.on_time + self.late + self.missed
        return self.on_time / total if total else 1.0


def is_idle(statuses: Sequence[PoolStatus]) -> bool:
    """Nothing to do in any pool: no task pending or in flight, no change asked, nothing unknown."""
    return bool(statuses) and all(s.pending == 0 and s.in_flight == 0 and not s.changed and s.error is None
                                  for s in statuses)


def next_interval(base: float, idle_rounds: int, idle_max: float) -> float:
    """The interval after `idle_rounds` idle rounds in a row: doubling from `base`, at most `idle_max`."""
    if idle_rounds <= 0 or idle_max <= base:
        return base
    return min(idle_max, base * 2.0 ** min(idle_rounds, 30))


class Scheduler:
    def __init__(self, *, max_concurrent: int = 32, late_after: float = 0.25, idle_max_interval: float = 5.0,
                 clock: Callable[[], float] | None = None) -> None:
        self.max_concurrent, self.late_after, self.idle_max_interval = max_concurrent, late_after, idle_max_interval
        self._clock = clock
        self._lanes: dict[str, asyncio.Task[None]] = {}
        self._semaphore: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._added = 0
        self.stats: dict[str, PollStats] = {}

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    def add(self, key: str, autoscaler: Autoscaler) -> None:
        """Start scheduling `autoscaler` (one BookGenQueue); replaces an earlier one of the same key."""
        self.remove(key)
        loop = asyncio.get_running_loop()
        if self._semaphore is None or self._loop is not loop:
            # One scheduler per process, but an event loop may end and another start (kopf restarted
            # in the same process, as in tests): lanes and the semaphore belong to the loop they ran in.
            self._lanes = {k: t for k, t in self._lanes.items() if t.get_loop() is loop}
            self._semaphore, self._loop = asyncio.Semaphore(self.max_concurrent), loop
        self.stats.setdefault(key, PollStats())
        phase = (self._added * GOLDEN) % 1.0
        self._added += 1
        self._lanes[key] = asyncio.create_task(self._lane(key, autoscaler, phase), name=f"autoscaler {key}")

    def remove(self, key: str) -> None:
        lane = self._lanes.pop(key, None)
        if lane is not None:
            lane.cancel()

    async def close(self) -> None:
        lanes = list(self._lanes.values())
        self._lanes.clear()
        for lane in lanes:
            lane.cancel()
        for lane in lanes:
            with contextlib.suppress(asyncio.CancelledError):
                await lane

    def _count(self, key: str, result: str, n: int = 1, lag: float | None = None) -> None:
        stats = self.stats[key]
        setattr(stats, result, getattr(stats, result) + n)
        POLLS.labels(result=result).inc(n)
        if lag is not None:
            POLL_LAG.observe(lag)
            if len(stats.lags) < 10_000:
                stats.lags.append(lag)

    async def _lane(self, key: str, autoscaler: Autoscaler, phase: float = 0.0) -> None:
        assert self._semaphore is not None
        base = autoscaler.poll_interval
        idle_rounds = 0
        tick = self._now() + phase * base
        await asyncio.sleep(phase * base)
        while True:
            async with self._semaphore:
                started = self._now()
                lag = max(0.0, started - tick)
                self._count(key, "late" if lag > self.late_after else "on_time", lag=lag)
                try:
                    statuses = list((await autoscaler.step()).values())
                except Exception:  # step() already guards each pool; this is a bug: log it, keep scheduling
                    log.exception("autoscaler round of %s failed", key)
                    statuses = []
                ROUND_SECONDS.observe(self._now() - started)
            idle_rounds = idle_rounds + 1 if is_idle(statuses) else 0
            interval = next_interval(base, idle_rounds, self.idle_max_interval)
            tick += interval
            now = self._now()
            if now > tick + interval:  # an overrun skipped whole ticks: count them, do not bunch rounds
                skipped = math.floor((now - tick) / interval)
                self._count(key, "missed", skipped)
                tick += skipped * interval
            await asyncio.sleep(max(0.0, tick - now))


T = TypeVar("T")


class SchedulerThread:
    """A Scheduler on a daemon thread with an event loop of its own; the caller's loop only hands work over.

    `await call(fn, *args)` runs `fn` in the scheduler's loop and returns its result (`call_async` awaits
    a coroutine function there): add and remove lanes, close what lives there. The handed-over callback carries the
    caller's context (asyncio copies it), and tasks created from it keep it.
    """

    def __init__(self, scheduler: Scheduler | None = None) -> None:
        self.scheduler = scheduler if scheduler is not None else Scheduler()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._thread is None or not self._thread.is_alive():
                loop = loops.new_event_loop()
                self._thread = threading.Thread(target=loop.run_forever, name="bookgen-autoscaler", daemon=True)
                self._thread.start()
                self._loop = loop
            return self._loop

    async def call(self, fn: Callable[..., T], *args: object) -> T:
        """`fn(*args)` run in the scheduler's loop; its result."""
        async def run() -> T:
            return fn(*args)

        return await self._handed_over(run())

    async def call_async(self, fn: Callable[..., Awaitable[T]], *args: object) -> T:
        """`await fn(*args)` in the scheduler's loop; its result."""
        async def run() -> T:
            return await fn(*args)

        return await self._handed_over(run())

    async def _handed_over(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, self._running_loop()))

    async def add(self, key: str, autoscaler: Autoscaler) -> None:
        await self.call(self.scheduler.add, key, autoscaler)

    async def remove(self, key: str) -> None:
        await self.call(self.scheduler.remove, key)

    def stop(self) -> None:
        """End the thread (lanes are cancelled with the loop); a later call starts a new one."""
        with self._lock:
            loop, self._loop = self._loop, None
            thread, self._thread = self._thread, None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)




__all__ = ["PollStats", "Scheduler", "SchedulerThread", "is_idle", "next_interval"]
