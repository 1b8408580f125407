"""Acceptance 3: the endpoint of a prefork monitoring worker serves exactly what measure() returns,
and keeps doing so (counters included) after every pool child has been recycled."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
from bookgen_worker.app import bookgen_settings
from bookgen_worker.metrics import Snapshot, measure
from bookgen_worker.metrics.workers import Held
from bookgen_worker.queues import QUEUES, transport_priority
from celery import Celery
from kombu import Queue

from tests.support.metrics_scrape import Samples, by_label, scrape, value
from tests.support.redis_server import free_port
from tests.support.registry import registered
from tests.support.waiting import wait_for
from tests.support.workers import REPO_ROOT, WorkerProcess, start_worker


@pytest.fixture
def monitoring_worker(celery_app: Celery, workdir: Path) -> Iterator[tuple[WorkerProcess, str]]:
    port = free_port()
    worker = start_worker(
        redis_url=celery_app.conf.broker_url, queues=["monitoring"], name="monitoring", workdir=workdir,
        concurrency=2, pool="prefork",
        extra_env={
            "BOOKGEN_MAX_TASKS_PER_CHILD": "1",
            "BOOKGEN_METRICS_PORT": str(port),
            "BOOKGEN_POOL": "monitoring",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])),
        },
    )
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        wait_for(lambda: _answers(url), timeout=30, what="metrics endpoint to answer")
        yield worker, url
    finally:
        worker.stop()


def _answers(url: str) -> bool:
    try:
        scrape(url)
    except Exception:
        return False
    return True


@contextmanager
def held_unacked(app: Celery, queue: str, count: int) -> Iterator[None]:
    with app.connection_for_read() as conn:
        bound = Queue(queue, routing_key=queue).bind(conn.default_channel)
        for _ in range(count):
            assert bound.get(no_ack=False) is not None
        yield


def assert_same_numbers(samples: Samples, snapshot: Snapshot) -> None:
    assert by_label(samples, "bookgen_queue_pending", "queue") == {q: d.pending for q, d in snapshot.queues.items()}
    assert by_label(samples, "bookgen_queue_in_flight", "queue") == {
        q: d.in_flight for q, d in snapshot.queues.items()
    }
    assert by_label(samples, "celery_queue_length", "queue_name") == {
        q: d.pending for q, d in snapshot.queues.items()
    }
    ages = by_label(samples, "bookgen_queue_oldest_pending_age_seconds", "queue")
    assert {q for q, age in ages.items() if age > 0} == {q for q, d in snapshot.queues.items() if d.pending}
    assert value(samples, "bookgen_dead_letter_queue_size") == snapshot.dead_letters
    assert value(samples, "bookgen_redis_up") == 1


def test_scrapes_equal_measure_under_prefork_and_after_children_are_recycled(
    celery_app: Celery, redis_client: redis.Redis, monitoring_worker: tuple[WorkerProcess, str]
) -> None:
    worker, url = monitoring_worker
    settings = bookgen_settings(celery_app)
    for priority in (0, 3, 5, 9, 10):
        for queue in ("export", "validation", "content_generation"):
            celery_app.send_task("bookgen.probe.record", args=["x"], queue=queue, routing_key=queue,
                                 priority=transport_priority(priority))
    redis_client.hset("failed_tasks", mapping={"dead-1": "{}", "dead-2": "{}"})

    # measure() counts in flight from what live workers report holding: a registry entry stands for the holder.
    with held_unacked(celery_app, "validation", 3), registered(redis_client, settings, {"validation": Held(3)}):
        first = scrape(url)
        snapshot = measure(redis_client, settings)
        assert set(snapshot.queues) == set(QUEUES)
        assert snapshot.queues["validation"].in_flight == 3  # the scenario is not trivially zero
        assert_same_numbers(first, snapshot)
        assert value(first, "bookgen_pool_workers_online", pool="monitoring") == 1
        assert value(first, "bookgen_pool_slots", pool="monitoring") == 2
        assert value(first, "bookgen_queue_workers_online", queue="monitoring") == 1
        assert value(first, "bookgen_queue_workers_online", queue="export") == 0

        children_before = set(worker.child_pids())
        runs = 4
        results = [celery_app.send_task("bookgen.get_queue_stats") for _ in range(runs)]
        stats = [result.get(timeout=60) for result in results]
        wait_for(lambda: not (set(worker.child_pids()) & children_before) and len(worker.child_pids()) == 2,
                 timeout=30, what="every pool child to be replaced (max-tasks-per-child 1)")

        # Counters written by pool children that no longer exist are all there: each child flushed its
        # last batch when it exited (worker_process_shutdown), the main process flushes every second.
        labels = {"task": "bookgen.get_queue_stats", "queue": "monitoring"}
        celery_labels = {"name": "bookgen.get_queue_stats", "hostname": "test", "queue_name": "monitoring"}

        def flushed() -> bool:  # children flush as they exit, the main process (received) every second
            samples = scrape(url)
            return (value(samples, "bookgen_tasks_succeeded_total", **labels) == runs
                    and value(samples, "celery_task_received_total", **celery_labels) == runs)

        wait_for(flushed, timeout=10, what="the counters of every run to be flushed")
        after = scrape(url)
        assert_same_numbers(after, measure(redis_client, settings))
        assert value(after, "bookgen_tasks_sent_total", **labels) == runs
        assert value(after, "bookgen_tasks_succeeded_total", **labels) == runs
        assert value(after, "bookgen_task_runtime_seconds_count", **labels) == runs
        assert value(after, "bookgen_task_runtime_seconds_bucket", le="+Inf", **labels) == runs
        assert value(after, "bookgen_tasks_failed_total", **labels) == 0  # initialised, never failed
        assert value(after, "celery_task_received_total", **celery_labels) == runs
        assert value(after, "celery_task_started_total", **celery_labels) == runs
        assert value(after, "celery_task_succeeded_total", **celery_labels) == runs
        assert value(after, "celery_task_failed_total", exception="", **celery_labels) == 0
        assert value(after, "celery_task_runtime_count", **celery_labels) == runs
        assert value(after, "celery_worker_up", hostname="test") == 1
        assert value(after, "celery_active_process_count", queue_name="monitoring") == 2
        # The task measured the same thing, through the same function.
        assert all(s["queues"]["export"]["pending"] == 5 for s in stats)
        assert all(s["queues"]["validation"]["in_flight"] == 3 for s in stats)
        last = value(after, "bookgen_last_measurement_timestamp_seconds")
        assert last is not None and last >= max(s["measured_at"] for s in stats)
