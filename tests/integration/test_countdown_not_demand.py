"""Tasks a worker holds for a countdown (retry backoff) are no demand: 40 of them scale nothing up."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import redis
from bookgen_operator.core.autoscaler.loop import Autoscaler
from bookgen_operator.core.autoscaler.policy import Policy
from bookgen_operator.sources.redis_source import RedisSource
from bookgen_worker.app import bookgen_settings
from bookgen_worker.metrics import measure
from celery import Celery

from tests.support.waiting import wait_for
from tests.support.workers import running_worker

COUNTDOWN_TASKS = 40
#: One task per slot: the old count (40 in flight) would have asked for 40 workers.
POLICY = Policy(min_replicas=1, max_replicas=40, target_per_slot=1, scale_down_window=0)


@dataclass(frozen=True)
class ExportPool:
    name: str = "export"
    queues: tuple[str, ...] = ("export",)
    concurrency: int = 1
    policy: Policy = POLICY


@dataclass
class OnePodPlatform:
    current: int = 1
    scaled: list[int] = field(default_factory=list)

    async def replicas(self, pool: str) -> int:
        return self.current

    async def busy_workers(self, pool: str) -> list[str]:
        return []

    async def scale(self, pool: str, replicas: int, busy: Sequence[str]) -> None:
        self.scaled.append(replicas)
        self.current = replicas


def test_forty_countdown_tasks_held_by_a_real_worker_cause_no_scale_up(
    celery_app: Celery, redis_client: redis.Redis, workdir: Path
) -> None:
    settings = bookgen_settings(celery_app)
    with running_worker(redis_url=celery_app.conf.broker_url, queues=["export"], name="export", workdir=workdir):
        for n in range(COUNTDOWN_TASKS):
            celery_app.send_task("bookgen.probe.record", args=[f"later-{n}"], queue="export", routing_key="export",
                                 countdown=300)
        snapshot = wait_for(
            lambda: (s := measure(redis_client, settings, ["export"])).queues["export"].scheduled == COUNTDOWN_TASKS
            and s,
            timeout=30, what="the worker to hold every countdown task",
        )
        export = snapshot.queues["export"]
        # kombu holds them unacknowledged (the old count said 40 in flight: 40 workers at 1 per slot) ...
        assert redis_client.hlen("unacked") == COUNTDOWN_TASKS
        assert (snapshot.unacked, snapshot.unaccounted) == (COUNTDOWN_TASKS, 0)
        # ... but they are scheduled, not pending or in flight.
        assert (export.pending, export.running, export.reserved, export.in_flight) == (0, 0, 0, 0)

        platform = OnePodPlatform()
        autoscaler = Autoscaler([ExportPool()], RedisSource(redis_client, settings), platform)
        statuses = [asyncio.run(autoscaler.step())["export"] for _ in range(3)]

    assert platform.scaled == []
    assert [s.desired for s in statuses] == [1, 1, 1]
    assert all(s.in_flight == 0 and s.pending == 0 for s in statuses)
