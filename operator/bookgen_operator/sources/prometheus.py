"""Observations from the Prometheus HTTP API (`GET /api/v1/query`), one set of instant queries per pool.

Queries (per pool, `queue=~` over the queues it consumes):

- pending / in flight: `sum(max by (queue) (bookgen_queue_pending{...}))`. The `max by (queue)`
  first folds duplicate series of one queue (two scraped monitoring pods, or a series that changed
  pod label in a rollout) so a queue is never counted twice;
- oldest age: `max(bookgen_queue_oldest_pending_age_seconds{...})`;
- busy slots: `sum(max by (pool) (bookgen_pool_busy_slots{..., pool="<pool>"}))`;
- freshness: `min(timestamp(bookgen_queue_pending{...}))`, the scrape time of the oldest sample, so
  the decision core can tell a fresh value from one Prometheus still serves from its 5-minute lookback;
- totals for the latency target: tasks sent and the runtime histogram's `_count` and `_sum`.

Every failure maps to "unknown" (None), never to zero: HTTP errors, `status: error`, timeouts, an
empty vector (the series does not exist — exporter down or not scraped) and NaN/Inf.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence

import httpx

from bookgen_operator.core.autoscaler.rates import Totals
from bookgen_operator.core.autoscaler.source import PoolMetrics, PoolQuery, finite

log = logging.getLogger(__name__)

_REGEX_SPECIAL = frozenset("\\.^$*+?()[]{}|")


def _label_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _regex_literal(text: str) -> str:
    return "".join("\\" + c if c in _REGEX_SPECIAL else c for c in text)


def queues_matcher(queues: Sequence[str]) -> str:
    return "|".join(_regex_literal(q) for q in queues)


def selector(labels: Mapping[str, str], **extra: str) -> str:
    parts = [f'{k}="{_label_value(v)}"' for k, v in labels.items()]
    parts += [f'{k}=~"{_label_value(v)}"' if k == "queue" else f'{k}="{_label_value(v)}"' for k, v in extra.items()]
    return "{" + ",".join(parts) + "}"


def pool_queries(pool: PoolQuery, labels: Mapping[str, str]) -> dict[str, str]:
    """The PromQL expressions of one pool, by field name."""
    q = selector(labels, queue=queues_matcher(pool.queues))
    p = selector(labels, pool=pool.name)
    return {
        "pending": f"sum(max by (queue) (bookgen_queue_pending{q}))",
        "in_flight": f"sum(max by (queue) (bookgen_queue_in_flight{q}))",
        "oldest_age": f"max(bookgen_queue_oldest_pending_age_seconds{q})",
        "busy_slots": f"sum(max by (pool) (bookgen_pool_busy_slots{p}))",
        "observed_at": f"min(timestamp(bookgen_queue_pending{q}))",
        # Cumulative totals for the service time and arrival rate (autoscaler.rates differences them).
        "sent": f"sum(max by (queue, task) (bookgen_tasks_sent_total{q}))",
        "finished": f"sum(max by (queue, task) (bookgen_task_runtime_seconds_count{q}))",
        "runtime_sum": f"sum(max by (queue, task) (bookgen_task_runtime_seconds_sum{q}))",
    }


def parse_response(payload: object) -> float | None:
    """The single value of an instant query's response envelope; None when there is none."""
    if not isinstance(payload, Mapping) or payload.get("status") != "success":
        return None
    data = payload.get("data")
    if not isinstance(data, Mapping):
        return None
    result = data.get("result")
    if not isinstance(result, list | tuple):
        return None  # no value at all (a scalar is [time, value], a vector a list of samples)
    try:
        if data.get("resultType") == "scalar":
            value = float(result[1])
        elif data.get("resultType") == "vector":
            if not result:
                return None  # no such series: unknown, not zero
            value = float(result[0]["value"][1])
        else:
            return None
    except (TypeError, ValueError, KeyError, IndexError):
        return None
    return value if finite(value) else None


def _totals(values: Mapping[str, float | None]) -> Totals | None:
    sent, finished, runtime = values.get("sent"), values.get("finished"), values.get("runtime_sum")
    if sent is None or finished is None or runtime is None:
        return None  # no task has run yet (no series): the latency target waits for a service time
    return Totals(sent, finished, runtime)


class PrometheusSource:
    def __init__(self, url: str, labels: Mapping[str, str] | None = None, *, timeout: float = 2.0,
                 clock: Callable[[], float] = time.time, client: httpx.AsyncClient | None = None) -> None:
        self.url = url.rstrip("/")
        self.labels = dict(labels or {})
        self.clock = clock
        self._client = client or httpx.AsyncClient(timeout=timeout)
        self._owns_client = client is None
        self.last_error: str | None = None

    async def query(self, expr: str) -> float | None:
        try:
            response = await self._client.get(f"{self.url}/api/v1/query", params={"query": expr})
            payload = response.json()
        except httpx.TimeoutException:
            return self._failed(f"Prometheus did not answer in time ({self.url})")
        except (httpx.HTTPError, ValueError) as exc:
            return self._failed(f"Prometheus query failed: {type(exc).__name__}: {exc}")
        if not isinstance(payload, Mapping):
            return self._failed(f"Prometheus answered {response.status_code} without a response envelope")
        if response.status_code >= 400 or payload.get("status") != "success":
            error = payload.get("error")
            return self._failed(f"Prometheus answered {response.status_code}: {error or 'no error text'}")
        return parse_response(payload)

    def _failed(self, message: str) -> float | None:
        """Log a new failure once; the query's answer is then unknown (None)."""
        if message != self.last_error:
            log.warning("%s", message)
        self.last_error = message
        return None

    async def _pool(self, pool: PoolQuery) -> PoolMetrics | None:
        exprs = pool_queries(pool, self.labels)
        values = dict(zip(exprs, await asyncio.gather(*(self.query(e) for e in exprs.values())), strict=True))
        if values["pending"] is None or values["in_flight"] is None:
            return None
        age, busy, at = values["oldest_age"], values["busy_slots"], values["observed_at"]
        pending = round(values["pending"])
        return PoolMetrics(
            pending=pending,
            in_flight=round(values["in_flight"]),
            oldest_age=age if (age is not None and pending > 0) else None,
            busy_slots=round(busy) if busy is not None else None,
            observed_at=at if at is not None else self.clock(),
            totals=_totals(values),
        )

    async def observe(self, pools: Sequence[PoolQuery]) -> dict[str, PoolMetrics | None]:
        results = await asyncio.gather(*(self._pool(p) for p in pools))
        return {p.name: r for p, r in zip(pools, results, strict=True)}

    async def close(self) -> None:
        if self._owns_client:
            await self._client.aclose()
