"""The local platform's choices with stand-in processes: which workers start, which stop, what replaces."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from bookgen_operator.core.autoscaler.platform import BusyUnknown
from bookgen_operator.local.platform import LocalPlatform, read_events
from bookgen_operator.local.supervisor import Supervisor

from tests.support.waiting import wait_for


@dataclass(frozen=True)
class Pool:
    name: str
    min_replicas: int = 1


def _launch(pool: Any, index: int, serve_metrics: bool) -> tuple[list[str], dict[str, str]]:
    return [sys.executable, "-c", "import time; time.sleep(600)"], dict(os.environ)


@pytest.fixture
def platform(tmp_path: Path) -> Any:
    busy: dict[str, int] = {}
    sup = Supervisor(tmp_path)

    def reader() -> dict[str, int]:
        if busy.get("__fail__"):
            raise ConnectionError("redis down")
        return dict(busy)

    p = LocalPlatform(sup, [Pool("content"), Pool("monitoring")], _launch, reader,
                      events_path=tmp_path / "events.jsonl", grace=5, metrics_pool="monitoring")
    p.busy = busy  # type: ignore[attr-defined]
    yield p
    sup.stop_all(2)


def test_scale_in_stops_idle_workers_newest_first_and_never_a_busy_one(platform: Any) -> None:
    asyncio.run(platform.scale("content", 4))
    assert [c.labels["pod"] for c in platform.workers("content")] == [f"local-content-{i}" for i in range(4)]
    platform.busy.update({"local-content-3": 1, "local-content-1": 2})

    asyncio.run(platform.scale("content", 1, []))
    stopped = [e["pod"] for e in read_events(platform.events_path) if e["event"] == "stop"]
    assert stopped == ["local-content-2", "local-content-0"]  # only the idle ones; the pool stays at 2 for now
    assert asyncio.run(platform.replicas("content")) == 2
    assert asyncio.run(platform.busy_workers("content")) == ["local-content-1", "local-content-3"]

    # The busy list the autoscaler passes is honoured too, even when the registry says idle.
    platform.busy.clear()
    asyncio.run(platform.scale("content", 1, ["local-content-3"]))
    assert [c.labels["pod"] for c in platform.workers("content")] == ["local-content-3"]


def test_the_metrics_server_is_stopped_last_and_its_role_moves_on(platform: Any) -> None:
    asyncio.run(platform.scale("monitoring", 3))
    serving = [c.labels["pod"] for c in platform.workers("monitoring") if c.labels["metrics"] == "1"]
    assert serving == ["local-monitoring-0"]
    asyncio.run(platform.scale("monitoring", 1))
    assert [c.labels["pod"] for c in platform.workers("monitoring")] == ["local-monitoring-0"]
    dead = platform.supervisor.children["worker-monitoring-0"]
    dead.signal_group(signal.SIGKILL)
    wait_for(lambda: not platform.supervisor.children["worker-monitoring-0"].running, timeout=10)
    platform.housekeep()  # replaced, and the replacement serves /metrics
    [replacement] = platform.workers("monitoring")
    assert replacement.labels["metrics"] == "1" and replacement.pid != dead.pid
    assert [e["pod"] for e in read_events(platform.events_path) if e["event"] == "crash"] == ["local-monitoring-0"]


def test_an_unreadable_registry_means_busy_unknown_and_no_scale_in(platform: Any) -> None:
    asyncio.run(platform.scale("content", 2))
    platform.busy["__fail__"] = 1
    with pytest.raises(BusyUnknown):
        asyncio.run(platform.busy_workers("content"))
    asyncio.run(platform.scale("content", 1))
    assert asyncio.run(platform.replicas("content")) == 2


def test_a_pool_whose_workers_keep_crashing_backs_off(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path)

    def crashing(pool: Any, index: int, serve_metrics: bool) -> tuple[list[str], dict[str, str]]:
        return [sys.executable, "-c", "raise SystemExit(3)"], dict(os.environ)

    p = LocalPlatform(sup, [Pool("content")], crashing, dict, events_path=tmp_path / "events.jsonl")
    asyncio.run(p.scale("content", 1))
    for _ in range(10):
        wait_for(lambda: all(not c.running for c in p.all_workers()), timeout=10, what="the worker to crash")
        p.housekeep()
    starts = [e for e in read_events(p.events_path) if e["event"] == "start"]
    assert len(starts) == 3  # CRASH_LIMIT crashes, then no new worker within the window
    assert asyncio.run(p.replicas("content")) == 0
    sup.stop_all(1)
