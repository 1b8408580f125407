"""Observations read from Redis directly, through the same `measure()` the exporter uses.

One pipelined round trip for every queue of every pool, the worker registry included (in flight,
busy slots and the pods running tasks all come from it; measure() reads it in the same pipeline).
With a `redis.asyncio` client (the operator's scheduler) the calls are awaited on the caller's loop;
with a blocking redis-py client (`bookgen up`, tests) they run in a thread so the event loop stays free.
Any Redis error makes every pool unknown (None) for this poll, never empty.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor

import redis
import redis.asyncio
from bookgen_worker.config import Settings
from bookgen_worker.metrics import measure
from bookgen_worker.metrics.keys import TASK_COUNTERS, TASK_RUNTIME, key
from bookgen_worker.metrics.measure import Snapshot, measure_async

from bookgen_operator.core.autoscaler.rates import Totals
from bookgen_operator.core.autoscaler.source import PoolMetrics, PoolQuery

log = logging.getLogger(__name__)

#: The task counters change slowly next to queue depth: read them (one more round trip) this often.
TOTALS_EVERY = 10.0


def queue_totals(client: redis.Redis, settings: Settings) -> dict[str, Totals]:
    """Per queue: tasks sent, tasks finished (runtime count) and their run time, from the workers' counters."""
    with client.pipeline(transaction=False) as pipe:
        pipe.hgetall(key(settings, TASK_COUNTERS))
        pipe.hgetall(key(settings, TASK_RUNTIME))
        counters, runtimes = pipe.execute()
    return totals_from(counters, runtimes)


async def queue_totals_async(client: redis.asyncio.Redis, settings: Settings) -> dict[str, Totals]:
    async with client.pipeline(transaction=False) as pipe:
        pipe.hgetall(key(settings, TASK_COUNTERS))
        pipe.hgetall(key(settings, TASK_RUNTIME))
        counters, runtimes = await pipe.execute()
    return totals_from(counters, runtimes)


def totals_from(counters: Mapping[bytes, bytes], runtimes: Mapping[bytes, bytes]) -> dict[str, Totals]:
    sums: dict[str, list[float]] = {}
    for field, value in counters.items():
        kind, _, rest = field.decode().partition("|")
        if kind == "sent":
            sums.setdefault(rest.rpartition("|")[2], [0.0, 0.0, 0.0])[0] += float(value)
    for field, value in runtimes.items():
        head, _, part = field.decode().rpartition("|")
        column = {"count": 1, "sum": 2}.get(part)
        if column is not None:
            sums.setdefault(head.rpartition("|")[2], [0.0, 0.0, 0.0])[column] += float(value)
    return {q: Totals(*v) for q, v in sums.items()}


def pool_totals(totals: Mapping[str, Totals], queues: Sequence[str]) -> Totals:
    parts = [totals.get(q, Totals(0, 0, 0)) for q in queues]
    return Totals(sum(t.sent for t in parts), sum(t.finished for t in parts), sum(t.runtime_sum for t in parts))


class RedisSource:
    def __init__(self, client: redis.Redis | redis.asyncio.Redis, settings: Settings, *,
                 worker_max_age: float = 10.0, executor: Executor | None = None) -> None:
        self.client = client
        #: Where a blocking client's calls run; None = asyncio.to_thread (an asyncio client needs none).
        self.executor = executor
        self.settings = settings
        self.worker_max_age = worker_max_age
        self.last_error: str | None = None
        self._totals: dict[str, Totals] = {}
        self._totals_at = -float("inf")

    def _read(self, pools: Sequence[PoolQuery]) -> dict[str, PoolMetrics | None]:
        assert isinstance(self.client, redis.Redis)
        snapshot = measure(self.client, self.settings, _queues(pools), worker_max_age=self.worker_max_age)
        if time.monotonic() - self._totals_at >= TOTALS_EVERY:
            self._totals, self._totals_at = queue_totals(self.client, self.settings), time.monotonic()
        return self._metrics(snapshot, pools)

    async def _read_async(self, client: redis.asyncio.Redis,
                          pools: Sequence[PoolQuery]) -> dict[str, PoolMetrics | None]:
        snapshot = await measure_async(client, self.settings, _queues(pools), worker_max_age=self.worker_max_age)
        if time.monotonic() - self._totals_at >= TOTALS_EVERY:
            self._totals, self._totals_at = await queue_totals_async(client, self.settings), time.monotonic()
        return self._metrics(snapshot, pools)

    def _metrics(self, snapshot: Snapshot, pools: Sequence[PoolQuery]) -> dict[str, PoolMetrics | None]:
        out: dict[str, PoolMetrics | None] = {}
        for pool in pools:
            depths = [snapshot.queues[q] for q in pool.queues]
            load = snapshot.pools.get(pool.name)
            ages = [d.oldest_pending_age for d in depths if d.oldest_pending_age is not None]
            out[pool.name] = PoolMetrics(
                pending=sum(d.pending for d in depths),
                in_flight=sum(d.in_flight for d in depths),
                oldest_age=max(ages) if ages else None,
                busy_slots=load.busy_slots if load else 0,
                observed_at=snapshot.measured_at,
                busy_pods=load.busy_pods if load else (),
                scheduled=sum(d.scheduled for d in depths),
                totals=pool_totals(self._totals, pool.queues),
            )
        return out

    async def observe(self, pools: Sequence[PoolQuery]) -> dict[str, PoolMetrics | None]:
        try:
            if isinstance(self.client, redis.asyncio.Redis):
                result = await self._read_async(self.client, pools)
            elif self.executor is not None:
                result = await asyncio.get_running_loop().run_in_executor(self.executor, self._read, pools)
            else:
                result = await asyncio.to_thread(self._read, pools)
        except (TimeoutError, redis.exceptions.RedisError, OSError) as exc:
            message = f"cannot measure the queues in Redis: {type(exc).__name__}: {exc}"
            if message != self.last_error:
                log.warning("%s", message)
            self.last_error = message
            return {p.name: None for p in pools}
        self.last_error = None
        return result

    async def close(self) -> None:
        return None


def _queues(pools: Sequence[PoolQuery]) -> tuple[str, ...]:
    """Every queue of these pools, sorted (cached: the same pools are asked about every second)."""
    return _sorted_queues(tuple(q for p in pools for q in p.queues))


@functools.lru_cache(maxsize=1024)
def _sorted_queues(queues: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(sorted(set(queues)))
