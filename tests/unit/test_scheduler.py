"""The scheduler of every BookGenQueue's autoscaler: bounded concurrency, late and missed polls, idle back-off,
replicas from the watch cache, and a Redis client closed when it is dropped."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from bookgen_operator.controller.actuator import ReplicaCache, WatchedPlatform
from bookgen_operator.controller.redis_access import RedisAccess
from bookgen_operator.controller.scheduler import Scheduler, is_idle, next_interval
from bookgen_operator.core.autoscaler.loop import PoolStatus


def status(pending: int | None = 0, in_flight: int | None = 0, changed: bool = False) -> PoolStatus:
    return PoolStatus("p", 1, 1, "r", changed, False, 0, pending, in_flight, None, 0.0)


class FakeAutoscaler:
    def __init__(self, poll_interval: float, seconds: float = 0.0, idle: bool = False) -> None:
        self.poll_interval, self.seconds, self.idle = poll_interval, seconds, idle
        self.steps = 0
        self.running = 0
        self.most = 0

    async def step(self) -> dict[str, PoolStatus]:
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await asyncio.sleep(self.seconds)
        finally:
            self.running -= 1
        self.steps += 1
        return {"p": status() if self.idle else status(pending=3)}


async def until(condition: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def test_rounds_of_many_queues_run_concurrently_but_at_most_max_concurrent_at_once() -> None:
    scheduler = Scheduler(max_concurrent=3)
    queues = [FakeAutoscaler(0.05, seconds=0.02) for _ in range(10)]
    active = 0
    most = 0

    for n, autoscaler in enumerate(queues):
        inner = autoscaler.step

        async def step(inner: Any = inner) -> dict[str, PoolStatus]:
            nonlocal active, most
            active += 1
            most = max(most, active)
            try:
                return await inner()  # type: ignore[no-any-return]
            finally:
                active -= 1

        autoscaler.step = step  # type: ignore[method-assign]
        scheduler.add(f"ns/q{n}", autoscaler)  # type: ignore[arg-type]
    try:
        await until(lambda: all(q.steps >= 3 for q in queues))
    finally:
        await scheduler.close()
    assert 1 < most <= 3


async def test_a_round_longer_than_its_interval_counts_the_skipped_polls_as_missed() -> None:
    scheduler = Scheduler(max_concurrent=4)
    slow = FakeAutoscaler(0.05, seconds=0.18)
    scheduler.add("ns/slow", slow)  # type: ignore[arg-type]
    try:
        await until(lambda: slow.steps >= 3)
    finally:
        await scheduler.close()
    stats = scheduler.stats["ns/slow"]
    assert stats.missed >= 2 * (slow.steps - 1) - 1  # each 0.18 s round skips 2-3 ticks of 0.05 s
    assert stats.share_on_time() < 0.6


def test_idle_queues_back_off_doubling_up_to_the_cap_and_any_demand_resets() -> None:
    assert [next_interval(1.0, n, 5.0) for n in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert next_interval(1.0, 3, 0.5) == 1.0  # a cap below the poll interval means no back-off
    assert is_idle([status(), status()])
    assert not is_idle([status(), status(pending=1)])
    assert not is_idle([status(in_flight=None)])  # unknown is not idle
    assert not is_idle([status(changed=True)])


async def test_an_idle_queue_is_polled_less_often_than_a_busy_one() -> None:
    scheduler = Scheduler(idle_max_interval=0.4)
    busy, idle = FakeAutoscaler(0.02), FakeAutoscaler(0.02, idle=True)
    scheduler.add("ns/busy", busy)  # type: ignore[arg-type]
    scheduler.add("ns/idle", idle)  # type: ignore[arg-type]
    try:
        await until(lambda: busy.steps >= 40)
    finally:
        await scheduler.close()
    assert idle.steps < busy.steps / 4


class CountingPlatform:
    def __init__(self) -> None:
        self.gets = 0
        self.scaled: list[int] = []

    async def replicas(self, pool: str) -> int:
        self.gets += 1
        return 2

    async def busy_workers(self, pool: str) -> list[str]:
        return []

    async def scale(self, pool: str, replicas: int, busy: Sequence[str]) -> None:
        self.scaled.append(replicas)


async def test_replicas_come_from_the_watch_and_the_api_is_read_only_on_a_miss() -> None:
    cache = ReplicaCache()
    inner = CountingPlatform()
    platform = WatchedPlatform(inner, cache, "ns", lambda pool: f"q-worker-{pool}")
    cache.seen("ns", "q-worker-content", 5)
    assert [await platform.replicas("content") for _ in range(3)] == [5, 5, 5]
    assert inner.gets == 0
    assert await platform.replicas("export") == 2 and await platform.replicas("export") == 2
    assert inner.gets == 1  # once, then cached
    await platform.scale("content", 7, [])
    assert inner.scaled == [7] and await platform.replicas("content") == 7
    cache.seen("ns", "q-worker-content", None)  # the API server's default
    assert await platform.replicas("content") == 1


class BrokenClient:
    closed = False

    def hvals(self, key: str) -> list[bytes]:
        raise ConnectionError("connection reset")

    def close(self) -> None:
        self.closed = True


async def test_a_redis_client_that_failed_is_closed_before_it_is_dropped() -> None:
    from bookgen_worker.config import Settings

    access = RedisAccess(spec=None, kube=None)  # type: ignore[arg-type]
    client = BrokenClient()
    access.client, access.settings = client, Settings()
    with pytest.raises(ConnectionError):
        await access.registry()
    assert access.client is None and client.closed


async def test_a_queue_is_scheduled_while_its_daemon_runs_and_reads_replicas_from_the_watch() -> None:
    from bookgen_operator.controller.autoscaling import build, run_scheduled
    from bookgen_operator.core.spec import parse_queue

    spec = parse_queue({"apiVersion": "bookgen.io/v1alpha1", "kind": "BookGenQueue",
                        "metadata": {"name": "books", "namespace": "ns", "uid": "u1"},
                        "spec": {"autoscaling": {"source": "redis"}}})
    cache = ReplicaCache()
    for pool in spec.pools:
        cache.seen("ns", f"books-worker-{pool.name}", 2)
    autoscaler = build(spec, kube=None, access=RedisAccess(spec, None), replicas=cache)  # type: ignore[arg-type]
    assert [await autoscaler.platform.replicas(p.name) for p in spec.pools] == [2] * len(spec.pools)

    scheduler = Scheduler()
    stopped = asyncio.Event()
    daemon = asyncio.create_task(run_scheduled(spec, None, stopped, scheduler, ReplicaCache()))  # type: ignore[arg-type]
    await until(lambda: "ns/books" in scheduler._lanes)
    stopped.set()
    await daemon
    assert "ns/books" not in scheduler._lanes
    await scheduler.close()


async def test_on_its_own_thread_the_scheduler_keeps_time_while_the_callers_loop_is_busy() -> None:
    import contextvars
    import time

    from bookgen_operator.controller.scheduler import SchedulerThread

    marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker")
    seen: list[str] = []

    class Marking(FakeAutoscaler):
        async def step(self) -> dict[str, PoolStatus]:
            seen.append(marker.get("missing"))  # kopf.event needs the context the lane was added from
            return await super().step()

    thread = SchedulerThread(Scheduler(late_after=0.05))
    autoscaler = Marking(0.02)
    marker.set("kopf context")
    try:
        await thread.add("ns/q", autoscaler)  # type: ignore[arg-type]
        await until(lambda: autoscaler.steps >= 2)
        steps = autoscaler.steps
        time.sleep(0.5)  # this loop is busy (a reconcile decoding a large answer): the lane is not
        assert autoscaler.steps >= steps + 15
        await thread.remove("ns/q")
        stats = thread.scheduler.stats["ns/q"]
        assert stats.share_on_time() > 0.9, stats
        assert set(seen) == {"kopf context"}
    finally:
        thread.stop()
