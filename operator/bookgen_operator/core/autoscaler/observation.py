"""One pool's observation (what the decision core is given) and its decision (what it returns)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Observation:
    """What is known about one pool at `observed_at` (epoch seconds of the metrics, not of the call).

    `demand_pending`/`demand_in_flight` are summed over the queues the pool consumes. `None` means
    the metric source could not say (never "zero"): the decision then holds or falls back.
    `current_replicas` and `busy_workers` come from the platform and are always known.
    """

    pool: str
    demand_pending: int | None
    demand_in_flight: int | None
    oldest_age: float | None
    current_replicas: int
    busy_workers: int
    concurrency: int
    observed_at: float
    #: Mean run time of a task of these queues over the recent window (seconds); None = not known yet.
    service_time: float | None = None
    #: Tasks sent to these queues per second over the recent window; None = not known.
    arrival_rate: float | None = None

    @property
    def metrics_missing(self) -> bool:
        return self.demand_pending is None or self.demand_in_flight is None

    @property
    def demand(self) -> int:
        return (self.demand_pending or 0) + (self.demand_in_flight or 0)


@dataclass(frozen=True)
class Decision:
    desired: int
    reason: str
    changed: bool
    #: The pre-stabilisation recommendation to remember in the history (None: nothing to remember,
    #: e.g. the observation was stale).
    recommendation: int | None = None
