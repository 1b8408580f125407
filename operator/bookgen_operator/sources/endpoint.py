"""Observations scraped from the monitoring worker's `/metrics` endpoint (the exporter), no Prometheus needed.

One GET per poll for every pool at once. A queue of the pool that the exposition does not list makes
that pool unknown (None), not empty; so does any HTTP error, timeout or unparsable body.
`bookgen_last_measurement_timestamp_seconds` dates the numbers (the exporter serves its last good
measurement while Redis is down, and the decision core must see that it is old).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bookgen_operator.core.autoscaler.rates import Totals
from bookgen_operator.core.autoscaler.source import PoolMetrics, PoolQuery, finite

log = logging.getLogger(__name__)


_TOTALS = ("bookgen_tasks_sent_total", "bookgen_task_runtime_seconds_count", "bookgen_task_runtime_seconds_sum")


class Exposition:
    """The samples we use, by metric name and label value."""

    def __init__(self, text: str) -> None:
        self.by_queue: dict[str, dict[str, float]] = {}
        self.by_pool: dict[str, dict[str, float]] = {}
        #: Summed over tasks, per queue: bookgen_tasks_sent_total and the runtime histogram's _count / _sum.
        self.totals: dict[str, dict[str, float]] = {}
        self.measured_at: float | None = None
        self.redis_up: float | None = None
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if not finite(sample.value):
                    continue
                if sample.name in _TOTALS and "queue" in sample.labels:
                    per = self.totals.setdefault(sample.name, {})
                    per[sample.labels["queue"]] = per.get(sample.labels["queue"], 0.0) + sample.value
                if "queue" in sample.labels:
                    self.by_queue.setdefault(sample.name, {})[sample.labels["queue"]] = sample.value
                elif "pool" in sample.labels:
                    self.by_pool.setdefault(sample.name, {})[sample.labels["pool"]] = sample.value
                elif sample.name == "bookgen_last_measurement_timestamp_seconds":
                    self.measured_at = sample.value
                elif sample.name == "bookgen_redis_up":
                    self.redis_up = sample.value

    def pool(self, pool: PoolQuery, now: float) -> PoolMetrics | None:
        pending = self.by_queue.get("bookgen_queue_pending", {})
        in_flight = self.by_queue.get("bookgen_queue_in_flight", {})
        if self.redis_up == 0 or not all(q in pending and q in in_flight for q in pool.queues):
            return None  # the exporter could not measure, or does not know a queue: unknown
        ages = [self.by_queue.get("bookgen_queue_oldest_pending_age_seconds", {}).get(q) for q in pool.queues]
        busy = self.by_pool.get("bookgen_pool_busy_slots", {}).get(pool.name)
        total_pending = int(sum(pending[q] for q in pool.queues))
        known_ages = [a for a in ages if a is not None]
        return PoolMetrics(
            pending=total_pending,
            in_flight=int(sum(in_flight[q] for q in pool.queues)),
            oldest_age=max(known_ages) if known_ages and total_pending > 0 else None,
            busy_slots=int(busy) if busy is not None else None,
            observed_at=self.measured_at if self.measured_at is not None else now,
            totals=self._pool_totals(pool) if self.totals else None,
        )

    def _pool_totals(self, pool: PoolQuery) -> Totals:
        sent, count, total = (sum(self.totals.get(name, {}).get(q, 0.0) for q in pool.queues) for name in _TOTALS)
        return Totals(sent, count, total)


class EndpointSource:
    def __init__(self, url: str, *, timeout: float = 2.0, clock: Callable[[], float] = time.time,
                 client: httpx.AsyncClient | None = None) -> None:
        self.url = url
        self.clock = clock
        self._client = client or httpx.AsyncClient(timeout=timeout)
        self._owns_client = client is None
        self.last_error: str | None = None

    async def observe(self, pools: Sequence[PoolQuery]) -> dict[str, PoolMetrics | None]:
        try:
            response = await self._client.get(self.url)
            response.raise_for_status()
            exposition = Exposition(response.text)
        except (httpx.HTTPError, ValueError) as exc:
            message = f"metrics endpoint {self.url} failed: {type(exc).__name__}: {exc}"
            if message != self.last_error:
                log.warning("%s", message)
            self.last_error = message
            return {p.name: None for p in pools}
        self.last_error = None
        now = self.clock()
        return {p.name: exposition.pool(p, now) for p in pools}

    async def close(self) -> None:
        if self._owns_client:
            await self._client.aclose()
