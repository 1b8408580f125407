"""The one interface every metric source implements, and what it returns per pool.

A source answers `observe(pools)` with a `PoolMetrics` per pool, or `None` when it cannot say
(server down, timeout, empty answer, NaN): the decision core then holds or falls back. A source
never turns "unknown" into zero, because zero demand scales a busy pool in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from bookgen_operator.core.autoscaler.rates import Totals


@dataclass(frozen=True)
class PoolMetrics:
    pending: int  # summed over every queue the pool consumes (every priority list)
    in_flight: int  # delivered to a worker and not yet acknowledged
    oldest_age: float | None  # seconds; None when nothing waits (or unknown)
    busy_slots: int | None  # worker slots running a task; None when the source cannot tell
    observed_at: float  # epoch seconds of the measurement itself (not of the request)
    #: Workers (pod names) running at least one task, when the source can tell (Redis registry).
    busy_pods: tuple[str, ...] | None = None
    #: Tasks workers hold for an ETA/countdown (never demand); None when the source cannot tell.
    scheduled: int | None = None
    #: Cumulative sent / finished / run-time totals of the pool's queues (the workers' counters and
    #: runtime histogram), for the service time and arrival rate; None when the source cannot tell.
    totals: Totals | None = None


class PoolQuery(Protocol):
    """What a source needs to know about a pool (PoolSpec satisfies it)."""

    @property
    def name(self) -> str: ...

    @property
    def queues(self) -> tuple[str, ...]: ...


class MetricsSource(Protocol):
    async def observe(self, pools: Sequence[PoolQuery]) -> Mapping[str, PoolMetrics | None]: ...

    async def close(self) -> None: ...


def finite(value: float) -> bool:
    return value == value and value not in (float("inf"), float("-inf"))
