"""Acceptance 1: measured pending and in-flight equal the truth, with real workers holding tasks."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from bookgen_worker.app import bookgen_settings
from bookgen_worker.metrics import measure
from bookgen_worker.metrics.workers import read_workers
from bookgen_worker.queues import transport_priority
from celery import Celery

from tests.support import blocking_tasks
from tests.support.waiting import wait_for
from tests.support.workers import REPO_ROOT, WorkerProcess, start_worker

PRIORITIES = (0, 3, 5, 9, 10)
COPIES = 2
QUEUES_WITH_WORK = ("content_generation", "validation", "export")


def worker_env(**extra: str) -> dict[str, str]:
    return {
        "BOOKGEN_EXTRA_TASK_MODULES": f"tests.support.probe_tasks,{blocking_tasks.MODULE}",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])),
        "BOOKGEN_METRICS_PORT": "off",
        **extra,
    }


@pytest.fixture
def workers(celery_app: Celery, redis_client: redis.Redis, workdir: Path) -> Iterator[dict[str, WorkerProcess]]:
    started: dict[str, WorkerProcess] = {}
    try:
        # validation: 2 slots, prefetch 1 -> holds 2 (both running)
        started["validation"] = start_worker(
            redis_url=celery_app.conf.broker_url, queues=["validation"], name="validation", workdir=workdir,
            concurrency=2, with_probe_tasks=False, extra_env=worker_env(),
        )
        # export: 1 slot, prefetch 4 -> holds 4 (1 running, 3 prefetched and waiting in the worker)
        started["export"] = start_worker(
            redis_url=celery_app.conf.broker_url, queues=["export"], name="export", workdir=workdir,
            concurrency=1, with_probe_tasks=False, extra_env=worker_env(BOOKGEN_PREFETCH_MULTIPLIER="4"),
        )
        yield started
    finally:
        redis_client.set(blocking_tasks.RELEASE_KEY, 1)
        for worker in started.values():
            worker.stop()


def held_by_worker(app: Celery, hostname: str) -> int:
    """What the worker itself says it holds: running plus reserved (remote control, not Redis)."""
    inspect = app.control.inspect(destination=[hostname], timeout=5)
    active = (inspect.active() or {}).get(hostname)
    reserved = (inspect.reserved() or {}).get(hostname)
    assert active is not None and reserved is not None, f"{hostname} did not answer inspect"
    return len(active) + len(reserved)


def test_pending_and_in_flight_equal_what_was_enqueued_and_reserved(
    celery_app: Celery, redis_client: redis.Redis, workers: dict[str, WorkerProcess]
) -> None:
    settings = bookgen_settings(celery_app)
    for queue in QUEUES_WITH_WORK:
        for priority in PRIORITIES:
            for copy in range(COPIES):
                celery_app.send_task(blocking_tasks.NAME, args=[f"{queue}-{priority}-{copy}"], queue=queue,
                                     routing_key=queue, priority=transport_priority(priority))
    enqueued = len(PRIORITIES) * COPIES

    # Both workers fill their slots; the tasks then block until released, so nothing moves.
    wait_for(lambda: redis_client.llen(blocking_tasks.STARTED_KEY) == 3, timeout=60, what="3 tasks running")
    expected_held = {"validation": 2, "export": 4}
    wait_for(
        lambda: {q: measure(redis_client, settings).queues[q].in_flight for q in expected_held} == expected_held,
        timeout=30, what="workers to reserve their prefetch",
    )

    held = {queue: held_by_worker(celery_app, f"{queue}@test") for queue in expected_held}
    snapshot = measure(redis_client, settings)

    assert held == expected_held
    truth = {"content_generation": (enqueued, 0)} | {q: (enqueued - n, n) for q, n in held.items()}
    assert {q: (snapshot.queues[q].pending, snapshot.queues[q].in_flight) for q in QUEUES_WITH_WORK} == truth
    assert all(snapshot.queues[q].oldest_pending_age is not None for q in QUEUES_WITH_WORK)
    assert snapshot.queues["monitoring"].pending == snapshot.queues["monitoring"].in_flight == 0

    # The registry sees the same: every slot busy (running, not merely prefetched).
    busy = wait_for(
        lambda: {w.pool: w.busy for w in read_workers(redis_client, settings)} == {"validation": 2, "export": 1},
        timeout=10, what="registry to report busy slots",
    )
    assert busy

    redis_client.set(blocking_tasks.RELEASE_KEY, 1)
    wait_for(
        lambda: redis_client.llen(blocking_tasks.FINISHED_KEY) == 2 * enqueued, timeout=60,
        what="validation and export queues to drain",
    )
    drained = wait_for(
        lambda: (s := measure(redis_client, settings)).queues["export"].in_flight == 0
        and s.queues["validation"].in_flight == 0 and s,
        timeout=10, what="acks to clear the unacked hash",
    )
    assert {q: (drained.queues[q].pending, drained.queues[q].in_flight) for q in QUEUES_WITH_WORK} == {
        "content_generation": (enqueued, 0), "validation": (0, 0), "export": (0, 0),
    }
