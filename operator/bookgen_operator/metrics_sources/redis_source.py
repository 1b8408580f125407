"""Observations read from Redis directly, through the same `measure()` the exporter uses.

One pipelined round trip for every queue of every pool, the worker registry included (in flight,
busy slots and the pods running tasks all come from it; measure() reads it in the same pipeline).
The blocking redis-py calls run in a thread so the event loop stays free.
Any Redis error makes every pool unknown (None) for this poll, never empty.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import redis
from bookgen_worker.config import Settings
from bookgen_worker.metrics import measure

from bookgen_operator.metrics_sources.base import PoolMetrics, PoolQuery

log = logging.getLogger(__name__)


class RedisSource:
    def __init__(self, client: redis.Redis, settings: Settings, *, worker_max_age: float = 10.0) -> None:
        self.client = client
        self.settings = settings
        self.worker_max_age = worker_max_age
        self.last_error: str | None = None

    def _read(self, pools: Sequence[PoolQuery]) -> dict[str, PoolMetrics | None]:
        queues = sorted({q for p in pools for q in p.queues})
        snapshot = measure(self.client, self.settings, queues, worker_max_age=self.worker_max_age)
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
            )
        return out

    async def observe(self, pools: Sequence[PoolQuery]) -> dict[str, PoolMetrics | None]:
        try:
            result = await asyncio.to_thread(self._read, pools)
        except (redis.exceptions.RedisError, OSError) as exc:
            message = f"cannot measure the queues in Redis: {type(exc).__name__}: {exc}"
            if message != self.last_error:
                log.warning("%s", message)
            self.last_error = message
            return {p.name: None for p in pools}
        self.last_error = None
        return result

    async def close(self) -> None:
        return None
