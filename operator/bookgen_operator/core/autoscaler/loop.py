"""The autoscaling loop: observe every pool, decide, actuate, report. The same on Kubernetes and locally.

`step()` does one round for all pools: one `source.observe()` call, then per pool the platform's
current replicas and busy workers (from the observation itself when the source read the worker
registry, as the Redis source does), the pure `decide()`, a `platform.scale()` when the decision
changes the count, and an `on_decision(PoolStatus)` callback (the kopf layer turns it into an Event
and a status patch; the local runtime into its live view). `run(stop)` repeats it every poll
interval (the shortest of the pools' policies) without drift, until `stop` is set; the operator's
autoscaler.scheduler runs the step() of every BookGenQueue instead, concurrently and bounded.

Safety: if the platform cannot tell which workers are busy, every current worker counts as busy, so
the pool can grow but only shrinks once fresh metrics show no task in flight; a failed observation
is "unknown", which decide() holds or falls back on, never zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from bookgen_operator.core.autoscaler.decide import decide
from bookgen_operator.core.autoscaler.history import History
from bookgen_operator.core.autoscaler.observation import Decision, Observation
from bookgen_operator.core.autoscaler.pause import Pause, hold
from bookgen_operator.core.autoscaler.platform import BusyUnknown, Platform, PlatformError
from bookgen_operator.core.autoscaler.policy import Policy
from bookgen_operator.core.autoscaler.rates import RateWindow
from bookgen_operator.core.autoscaler.source import MetricsSource, PoolMetrics
from bookgen_operator.core.objects import JSON

log = logging.getLogger(__name__)


class ScaledPool(Protocol):
    """What the loop needs of a pool (PoolSpec satisfies it)."""

    @property
    def name(self) -> str: ...

    @property
    def queues(self) -> tuple[str, ...]: ...

    @property
    def concurrency(self) -> int: ...

    @property
    def policy(self) -> Policy: ...


@dataclass(frozen=True)
class PoolStatus:
    pool: str
    desired: int
    current: int
    reason: str
    changed: bool  # the decision asked for another count
    scaled: bool  # ... and the platform applied it
    busy_workers: int
    pending: int | None
    in_flight: int | None
    last_scale_time: float | None
    observation_age: float | None  # seconds; None when there was no observation
    error: str | None = None

    def to_status(self) -> JSON:
        """The per-pool block of the BookGenQueue status (camelCase, CRD schema)."""
        out: JSON = {"desiredReplicas": self.desired, "busyWorkers": self.busy_workers,
                               "reason": self.reason[:1024]}
        if self.pending is not None:
            out["pending"] = self.pending
        if self.in_flight is not None:
            out["inFlight"] = self.in_flight
        if self.last_scale_time is not None:
            out["lastScaleTime"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.last_scale_time))
        if self.observation_age is not None:
            out["observationAgeSeconds"] = round(self.observation_age, 3)
        return out


OnDecision = Callable[[PoolStatus], Awaitable[None] | None]
#: Asked every round: the queue's pause (pause.py), or None while it scales.
PauseCheck = Callable[[], Pause | None]


def busy_floor(busy_pods: Sequence[str], metrics: PoolMetrics | None, concurrency: int) -> int:
    """Workers that must stay: the busy pods we know of, and at least what the busy slots imply."""
    from_slots = math.ceil(metrics.busy_slots / max(1, concurrency)) if metrics and metrics.busy_slots else 0
    return max(len(busy_pods), from_slots)


def paused_decision(pool: str, pause: Pause, current: int, busy: int) -> Decision:
    """A paused pool's decision: hold (pause.hold), with no recommendation for the history, so the
    stabilisation windows after the pause see only what was observed while scaling."""
    desired = hold(pause, current, busy)
    kept = f" ({busy} busy workers kept)" if pause.replicas is not None and busy > pause.replicas else ""
    return Decision(desired, f"{pool}: {pause.describe()}: {desired} replicas{kept}", desired != current)


class Autoscaler:
    def __init__(self, spec_pools: Sequence[ScaledPool], source: MetricsSource, platform: Platform,
                 clock: Callable[[], float] = time.time, on_decision: OnDecision | None = None,
                 paused: PauseCheck | None = None) -> None:
        self.pools = tuple(spec_pools)
        self.paused = paused
        self.source = source
        self.platform = platform
        self.clock = clock
        self.on_decision = on_decision
        self.histories: dict[str, History] = {p.name: History() for p in self.pools}
        self.rates: dict[str, RateWindow] = {p.name: RateWindow() for p in self.pools}
        self.status: dict[str, PoolStatus] = {}

    @property
    def poll_interval(self) -> float:
        return min((p.policy.poll_interval for p in self.pools), default=1.0)

    async def _observe(self) -> Mapping[str, PoolMetrics | None]:
        try:
            return await self.source.observe(self.pools)
        except Exception as exc:  # a source bug must not stop scaling: treat as unknown
            log.warning("metric source failed: %s: %s", type(exc).__name__, exc)
            return {}

    async def _pool_step(self, pool: ScaledPool, metrics: PoolMetrics | None) -> PoolStatus:
        history = self.histories[pool.name]
        try:
            current = await self.platform.replicas(pool.name)
        except PlatformError as exc:
            return PoolStatus(pool.name, history.last_desired or 0, 0, f"{pool.name}: {exc}", False, False, 0,
                              None, None, history.last_scale_time, None, str(exc))
        try:
            if metrics is not None and metrics.busy_pods is not None:
                # The Redis source read the registry in the same round trip: no second read per pool.
                busy_pods = sorted(metrics.busy_pods)
            else:
                busy_pods = list(await self.platform.busy_workers(pool.name))
            busy = busy_floor(busy_pods, metrics, pool.concurrency)
        except BusyUnknown:
            # Cannot tell which workers are busy: every worker counts as busy (grow, never shrink) unless
            # fresh metrics show nothing in flight at all (no unacked message: no task runs anywhere).
            now = self.clock()
            idle = (metrics is not None and metrics.in_flight == 0 and not metrics.busy_slots
                    and now - metrics.observed_at <= pool.policy.stale_after)
            busy_pods, busy = [], 0 if idle else current
        now = self.clock()
        rates = self.rates[pool.name]
        if metrics is not None and metrics.totals is not None:
            rates.add(metrics.observed_at, metrics.totals)
        obs = Observation(pool.name, metrics.pending if metrics else None, metrics.in_flight if metrics else None,
                          metrics.oldest_age if metrics else None, current, busy, pool.concurrency,
                          metrics.observed_at if metrics else now, rates.service_time(), rates.arrival_rate())
        pause = self.paused() if self.paused is not None else None
        decision = paused_decision(pool.name, pause, current, busy) if pause else decide(obs, pool.policy, history, now)
        if decision.recommendation is not None:
            horizon = max(pool.policy.scale_up_window, pool.policy.scale_down_window) + pool.policy.poll_interval
            history.record(now, decision.recommendation, horizon)
        scaled, error = await self._actuate(pool, decision, current, busy_pods, now)
        return PoolStatus(
            pool=pool.name, desired=decision.desired, current=current,
            reason=decision.reason if error is None else f"{decision.reason}; scaling failed: {error}",
            changed=decision.changed, scaled=scaled, busy_workers=busy,
            pending=metrics.pending if metrics else None, in_flight=metrics.in_flight if metrics else None,
            last_scale_time=history.last_scale_time,
            observation_age=max(0.0, now - metrics.observed_at) if metrics else None, error=error,
        )

    async def _actuate(self, pool: ScaledPool, decision: Decision, current: int, busy_pods: list[str],
                       now: float) -> tuple[bool, str | None]:
        if not decision.changed:
            if self.histories[pool.name].last_desired is None:
                self.histories[pool.name].last_desired = current
            return False, None
        try:
            await self.platform.scale(pool.name, decision.desired, busy_pods)
        except PlatformError as exc:
            log.warning("could not scale pool %s to %d: %s", pool.name, decision.desired, exc)
            return False, str(exc)
        self.histories[pool.name].scaled(now, decision.desired)
        log.info("%s", decision.reason)
        return True, None

    async def step(self) -> dict[str, PoolStatus]:
        """One round over every pool; returns (and keeps in `self.status`) each pool's status."""
        observed = await self._observe()
        for pool in self.pools:
            try:
                status = await self._pool_step(pool, observed.get(pool.name))
            except Exception as exc:  # one pool's failure must not starve the others
                log.exception("autoscaling pool %s failed", pool.name)
                status = PoolStatus(pool.name, 0, 0, f"{pool.name}: autoscaler error: {exc}", False, False, 0,
                                    None, None, self.histories[pool.name].last_scale_time, None, str(exc))
            self.status[pool.name] = status
            await self._report(status)
        return dict(self.status)

    async def _report(self, status: PoolStatus) -> None:
        if self.on_decision is None:
            return
        try:
            result = self.on_decision(status)
            if inspect.isawaitable(result):
                await result
        except Exception:  # reporting is best effort; scaling goes on
            log.exception("on_decision callback failed for pool %s", status.pool)

    async def run(self, stop: asyncio.Event) -> None:
        """step() every poll interval (on a fixed schedule, no drift) until `stop` is set."""
        interval = self.poll_interval
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        while not stop.is_set():
            await self.step()
            next_tick += interval
            delay = next_tick - loop.time()
            if delay < 0:  # a slow round: skip the missed ticks rather than bunching rounds
                next_tick = loop.time()
                delay = 0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
