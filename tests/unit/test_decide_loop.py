"""The autoscaling loop around decide(): what it does when a source or the platform cannot answer."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from bookgen_operator.core.autoscaler.loop import Autoscaler, PoolStatus
from bookgen_operator.core.autoscaler.platform import BusyUnknown, PlatformError
from bookgen_operator.core.autoscaler.policy import Policy
from bookgen_operator.core.autoscaler.source import PoolMetrics
from bookgen_operator.sources.select import make_source, source_kind

NOW = 1_000_000.0
POLICY = Policy(min_replicas=1, max_replicas=20, target_per_slot=5, scale_down_window=0, target_oldest_age=None)


@dataclass(frozen=True)
class Pool:
    name: str
    queues: tuple[str, ...] = ("q",)
    concurrency: int = 1
    policy: Policy = POLICY


@dataclass
class FakeSource:
    metrics: dict[str, PoolMetrics | None]
    fail: bool = False

    async def observe(self, pools: Sequence[Any]) -> dict[str, PoolMetrics | None]:
        if self.fail:
            raise RuntimeError("boom")
        return {p.name: self.metrics.get(p.name) for p in pools}

    async def close(self) -> None:
        return None


@dataclass
class FakePlatform:
    current: dict[str, int]
    busy: dict[str, list[str]] = field(default_factory=dict)
    busy_unknown: bool = False
    missing: set[str] = field(default_factory=set)
    scaled: list[tuple[str, int, list[str]]] = field(default_factory=list)

    async def replicas(self, pool: str) -> int:
        if pool in self.missing:
            raise PlatformError(f"Deployment for {pool} does not exist yet")
        return self.current[pool]

    async def busy_workers(self, pool: str) -> list[str]:
        if self.busy_unknown:
            raise BusyUnknown("registry unreachable")
        return self.busy.get(pool, [])

    async def scale(self, pool: str, replicas: int, busy: Sequence[str]) -> None:
        self.scaled.append((pool, replicas, list(busy)))
        self.current[pool] = replicas


def metrics(pending: int, in_flight: int = 0, busy_slots: int | None = None) -> PoolMetrics:
    return PoolMetrics(pending, in_flight, None, busy_slots, NOW)


async def test_a_step_scales_and_reports_every_pool() -> None:
    reports: list[PoolStatus] = []
    platform = FakePlatform({"a": 1, "b": 3})
    scaler = Autoscaler([Pool("a"), Pool("b")], FakeSource({"a": metrics(40), "b": metrics(15)}), platform,
                        clock=lambda: NOW, on_decision=reports.append)
    await scaler.step()
    assert platform.scaled == [("a", 8, [])]
    assert [(r.pool, r.desired, r.scaled) for r in reports] == [("a", 8, True), ("b", 3, False)]
    status = reports[0].to_status()
    assert status["desiredReplicas"] == 8 and status["pending"] == 40 and status["observationAgeSeconds"] == 0
    assert status["lastScaleTime"].endswith("Z")


async def test_unknown_busy_workers_allow_growth_but_shrinking_only_when_nothing_runs() -> None:
    platform = FakePlatform({"a": 6}, busy_unknown=True)
    scaler = Autoscaler([Pool("a")], FakeSource({"a": metrics(0, 3)}), platform, clock=lambda: NOW)
    await scaler.step()
    assert platform.scaled == []  # demand says 1, but any of the 6 may be running one of the 3 tasks
    scaler.source = FakeSource({"a": metrics(100)})
    await scaler.step()
    assert platform.scaled == [("a", 20, [])]
    scaler.source = FakeSource({"a": metrics(0, 0, busy_slots=0)})
    await scaler.step()  # nothing in flight anywhere: no worker can be busy, scaling in is safe
    assert platform.scaled[-1] == ("a", 1, [])


async def test_busy_slots_from_metrics_count_as_busy_workers() -> None:
    platform = FakePlatform({"a": 6})
    scaler = Autoscaler([Pool("a", concurrency=2)], FakeSource({"a": metrics(0, 7, busy_slots=7)}), platform,
                        clock=lambda: NOW)
    await scaler.step()
    assert platform.scaled == [("a", 4, [])]  # 7 busy slots of 2 need at least 4 workers


async def test_a_failing_source_or_platform_holds_and_the_other_pools_go_on() -> None:
    platform = FakePlatform({"a": 4, "b": 1}, missing={"a"})
    scaler = Autoscaler([Pool("a"), Pool("b")], FakeSource({}, fail=True), platform, clock=lambda: NOW)
    result = await scaler.step()
    assert platform.scaled == []  # the source failed: unknown, held (never read as zero)
    assert "does not exist yet" in result["a"].reason and result["a"].error
    assert "metrics missing" in result["b"].reason
    scaler.source = FakeSource({"b": metrics(50)})
    await scaler.step()
    assert platform.scaled == [("b", 10, [])]


async def test_run_polls_until_stopped() -> None:
    rounds: list[PoolStatus] = []
    stop = asyncio.Event()

    def on_decision(status: PoolStatus) -> None:
        rounds.append(status)
        if len(rounds) == 3:
            stop.set()

    fast = Policy(min_replicas=1, max_replicas=5, poll_interval=0.01)
    scaler = Autoscaler([Pool("a", policy=fast)], FakeSource({"a": metrics(0)}), FakePlatform({"a": 1}),
                        on_decision=on_decision)
    await asyncio.wait_for(scaler.run(stop), 5)
    assert len(rounds) == 3


async def test_source_selection() -> None:
    assert source_kind("auto", "http://prometheus:9090") == "prometheus"
    assert source_kind("auto", "") == "endpoint"
    assert source_kind("redis", "") == "redis"
    source = make_source("auto", endpoint_url="http://bq-metrics.ns.svc:9808/metrics")
    assert type(source).__name__ == "EndpointSource"
    await source.close()
    with pytest.raises(ValueError, match=r"needs autoscaling\.prometheusUrl"):
        source_kind("prometheus", "")
    with pytest.raises(ValueError, match="unknown autoscaling source 'statsd'"):
        source_kind("statsd", "")
