"""Autoscaling policy of one worker pool: the knobs, with defaults a user rarely needs to touch.

Shared by the BookGenQueue spec (operator/bookgen_operator/spec.py builds it from the CRD's
`autoscaling` block), the decision core and the local runtime.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Policy:
    min_replicas: int = 1
    max_replicas: int = 10
    #: Desired workers = ceil((pending + in flight) / (target_per_slot * concurrency)) while no
    #: service time is known (or with target_wait off). 10 keeps a standing queue (p95 ~230 s on
    #: every trace of bench/simulate.py); it only bridges the first minutes now.
    target_per_slot: float = 10.0
    #: Latency target (seconds): size the pool so waiting tasks start within about this long (p95),
    #: from the measured service time (decide.wait_slots). The default, from the Pareto curves of
    #: `bench/simulate.py --pareto`: 60 s is the one setting that beats tuned KEDA by >= 1.3x at equal
    #: worker-seconds on all four traces (docs/autoscaling.md). None (CRD: 0) = targetPerSlot only.
    target_wait: float | None = 60.0
    #: Optional: scale up further (up to 3x) while the oldest pending task is older than this (seconds);
    #: the latency guard under steady load, where a queue-length target alone lets waits grow.
    target_oldest_age: float | None = 120.0
    #: Scale up at once to the highest recommendation seen in this window (0 = immediately).
    scale_up_window: float = 0.0
    #: Scale down only to the highest recommendation seen in this window.
    scale_down_window: float = 30.0
    #: Largest change in replicas per decision (None = no limit: the full target in one step).
    max_step: int | None = None
    #: With min_replicas 0: wake from zero only when demand reaches this many tasks.
    activation_threshold: int = 1
    #: Relative band around the current replicas inside which nothing changes.
    tolerance: float = 0.1
    #: Replicas to hold when observations are missing or older than `stale_after` seconds.
    fallback_replicas: int | None = None
    stale_after: float = 30.0
    #: How often the autoscaler observes and decides (seconds).
    poll_interval: float = 1.0

    def __post_init__(self) -> None:
        if self.min_replicas < 0 or self.max_replicas < 1 or self.min_replicas > self.max_replicas:
            raise ValueError(
                f"autoscaling needs 0 <= minReplicas <= maxReplicas and maxReplicas >= 1 "
                f"(got {self.min_replicas}..{self.max_replicas})"
            )
        if self.target_per_slot <= 0:
            raise ValueError("autoscaling targetPerSlot must be above 0")
        if self.target_wait is not None and self.target_wait <= 0:
            raise ValueError("autoscaling targetWaitSeconds must be above 0")
        if self.poll_interval <= 0:
            raise ValueError("autoscaling pollInterval must be above 0 seconds")
