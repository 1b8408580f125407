"""The autoscaler's status writes: never awaited by a round, one patch per queue, none when nothing changed."""

from __future__ import annotations

import asyncio
from typing import Any

from bookgen_operator.controller.status_reporter import StatusReporter
from bookgen_operator.core.autoscaler.loop import PoolStatus

from tests.support.queue_stub import QueueStub


class Kube:
    """Records status patches; `gate` (when set) holds every patch until it is opened."""

    def __init__(self, gate: asyncio.Event | None = None) -> None:
        self.patches: list[dict[str, Any]] = []
        self.gate = gate

    async def patch(self, resource: Any, namespace: str, name: str, body: dict[str, Any], **_: Any) -> None:
        if self.gate is not None:
            await self.gate.wait()
        self.patches.append(body["status"])


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def status(pool: str, pending: int = 3, desired: int = 1, scaled: bool = False) -> PoolStatus:
    return PoolStatus(pool, desired, 1, f"{pool}: {desired}", scaled, scaled, 0, pending, 0, None, 0.2)


async def settled(reporter: StatusReporter) -> None:
    """Wait (bounded) until the reporter's write task, if any, is done."""
    async with asyncio.timeout(5):
        while reporter._task is not None and not reporter._task.done():
            await asyncio.sleep(0)


async def test_a_round_does_not_wait_for_the_api_server_and_its_pools_share_one_patch() -> None:
    gate = asyncio.Event()
    kube = Kube(gate)
    reporter = StatusReporter(QueueStub(name="status-test"), kube)  # type: ignore[arg-type]
    async with asyncio.timeout(1):  # the API server answers nothing yet: the round still completes
        for pool in ("content", "validation", "export", "monitoring"):
            await reporter(status(pool))
    assert kube.patches == []
    gate.set()
    await settled(reporter)
    assert len(kube.patches) == 1
    assert sorted(kube.patches[0]["pools"]) == ["content", "export", "monitoring", "validation"]
    assert kube.patches[0]["pending"] == 12


async def test_rounds_that_change_nothing_write_nothing() -> None:
    kube = Kube()
    reporter = StatusReporter(QueueStub(name="status-test"), kube)  # type: ignore[arg-type]
    for _ in range(20):
        await reporter(status("export"))
        await settled(reporter)
    assert len(kube.patches) == 1  # the first


async def test_demand_changes_are_written_at_most_every_min_interval_but_a_scaling_at_once() -> None:
    kube, clock = Kube(), Clock()
    reporter = StatusReporter(QueueStub(name="status-test"), kube, min_interval=5.0, clock=clock)  # type: ignore[arg-type]
    await reporter(status("export", pending=1))
    await settled(reporter)
    for pending in range(2, 6):  # a new backlog every second
        clock.now += 1
        await reporter(status("export", pending=pending))
        await settled(reporter)
    assert [p["pools"]["export"]["pending"] for p in kube.patches] == [1]
    clock.now += 1  # 5 s after the first write
    await reporter(status("export", pending=6))
    await settled(reporter)
    clock.now += 1
    await reporter(status("export", pending=9, desired=3, scaled=True))
    await settled(reporter)
    assert [p["pools"]["export"]["pending"] for p in kube.patches] == [1, 6, 9]
    assert kube.patches[-1]["pools"]["export"]["desiredReplicas"] == 3


async def test_a_failed_write_is_retried_by_a_later_round_and_close_drops_a_pending_one() -> None:
    class Failing(Kube):
        async def patch(self, *args: Any, **kwargs: Any) -> None:
            raise OSError("connection refused")

    reporter = StatusReporter(QueueStub(name="status-test"), Failing())  # type: ignore[arg-type]
    await reporter(status("export"))
    await settled(reporter)
    assert reporter.written == {}  # not written: the next round tries again
    assert reporter.patches == 1

    gate = asyncio.Event()
    reporter = StatusReporter(QueueStub(name="status-test"), Kube(gate))  # type: ignore[arg-type]
    await reporter(status("export"))
    await asyncio.sleep(0.01)
    await reporter.close()  # the queue went away while its write waited
    assert reporter.written == {}
