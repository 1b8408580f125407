"""A pool child recycled by max-tasks-per-child is replaced at once, not at the pool's 5 s timer.

Without bookgen_worker.patches.prefork_pool, most recycles of a one-process worker left the slot idle for
1-5 s: Celery reaps a child the moment its sentinel pipe closes, which is often a moment before
the kernel lets it be reaped, and then only retries from a 5 s timer.
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import redis
from bookgen_worker.queues import DEFAULT
from celery import Celery

from tests.support import probe_tasks
from tests.support.waiting import wait_for
from tests.support.workers import running_worker

PER_CHILD = 5
RECYCLES = 8
TASKS = PER_CHILD * (RECYCLES + 1)
#: Far above a replacement's cost (about 0.1 s on a busy 2-CPU machine), far below the 5 s timer.
MAX_GAP = 2.0


def test_every_recycled_child_is_replaced_at_once_and_no_task_runs_twice(
    celery_app: Celery, redis_client: redis.Redis, workdir: Path
) -> None:
    labels = [f"recycle-{index}" for index in range(TASKS)]
    for label in labels:
        probe_tasks.record.apply_async(args=(label,), queue=DEFAULT)
    with running_worker(
        redis_url=celery_app.conf.broker_url, queues=[DEFAULT], name="recycle", workdir=workdir, concurrency=1,
        extra_env={"BOOKGEN_MAX_TASKS_PER_CHILD": str(PER_CHILD), "BOOKGEN_METRICS_PORT": "off"},
    ):
        wait_for(lambda: len(probe_tasks.done(redis_client)) == TASKS, timeout=120, what="every task to complete")

    assert probe_tasks.done(redis_client) == {label: 1 for label in labels}
    events = sorted(probe_tasks.events(redis_client), key=lambda event: event["at"])
    assert len(events) == TASKS
    handovers = [(before, after) for before, after in pairwise(events) if before["pid"] != after["pid"]]
    assert len(handovers) == RECYCLES  # one child per PER_CHILD tasks: every recycle is in the window
    gaps = [round(after["at"] - before["at"], 3) for before, after in handovers]
    assert max(gaps) < MAX_GAP, f"a recycled child was replaced late: gaps between children {gaps} s"
