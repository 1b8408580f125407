"""A worker killed with SIGKILL mid-task loses nothing: acks_late + reject_on_worker_lost + restore."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import redis
from bookgen_worker.queues import DEFAULT
from celery import Celery

from tests.support import probe_tasks
from tests.support.waiting import wait_for
from tests.support.workers import running_worker, start_worker

TASKS = 12


def send_burst(seconds: float) -> list[str]:
    labels = [f"task-{index}" for index in range(TASKS)]
    for label in labels:
        probe_tasks.record.apply_async(args=(label, seconds), queue=DEFAULT)
    return labels


def running_now(client: redis.Redis) -> list[dict]:
    """Tasks that started but have not finished yet."""
    finished = probe_tasks.done(client)
    return [event for event in probe_tasks.events(client) if event["label"] not in finished]


def test_a_pool_child_killed_mid_task_has_its_task_redelivered_at_once(
    celery_app: Celery, redis_client: redis.Redis, workdir: Path
) -> None:
    labels = send_burst(seconds=0.5)
    with running_worker(
        redis_url=celery_app.conf.broker_url, queues=[DEFAULT], name="w", workdir=workdir, concurrency=2
    ):
        wait_for(lambda: running_now(redis_client), timeout=30, what="a task to be running")
        victim = running_now(redis_client)[0]
        os.kill(victim["pid"], signal.SIGKILL)

        wait_for(lambda: len(probe_tasks.done(redis_client)) == TASKS, timeout=60, what="every task to complete")

    done = probe_tasks.done(redis_client)
    assert sorted(done) == sorted(labels)
    assert done[victim["label"]] == 1  # it never finished before the kill, and finished once after
    deliveries = [event for event in probe_tasks.events(redis_client) if event["label"] == victim["label"]]
    assert len(deliveries) == 2
    assert deliveries[0]["task_id"] == deliveries[1]["task_id"]  # the same message, delivered again


def test_a_whole_worker_killed_mid_task_has_its_tasks_restored_to_the_next_worker(
    celery_app: Celery, redis_client: redis.Redis, workdir: Path
) -> None:
    # A dead worker's unacked tasks return after the visibility timeout, which must exceed the hard
    # time limit; both are shrunk here so the test takes seconds instead of hours.
    env = {
        "BOOKGEN_SOFT_TIME_LIMIT": "1.5",
        "BOOKGEN_TIME_LIMIT": "2",
        "BOOKGEN_VISIBILITY_TIMEOUT": "3",
        "BOOKGEN_UNACKED_RESTORE_INTERVAL": "1",
        "BOOKGEN_UNACKED_RESTORE_THROTTLE": "1",
    }
    labels = send_burst(seconds=0.5)
    first = start_worker(
        redis_url=celery_app.conf.broker_url, queues=[DEFAULT], name="first", workdir=workdir, concurrency=2,
        extra_env=env,
    )
    try:
        wait_for(lambda: running_now(redis_client), timeout=30, what="a task to be running")
        children = first.child_pids()
        first.process.kill()  # SIGKILL: no warm shutdown, no ack, no requeue by the worker itself
        for pid in children:
            os.kill(pid, signal.SIGKILL)
        first.process.wait()
        interrupted = {event["label"] for event in running_now(redis_client)}
        assert interrupted
    finally:
        first.stop()

    with running_worker(
        redis_url=celery_app.conf.broker_url, queues=[DEFAULT], name="second", workdir=workdir, concurrency=2,
        extra_env=env,
    ):
        wait_for(lambda: set(probe_tasks.done(redis_client)) == set(labels), timeout=60, what="every task")

    done = probe_tasks.done(redis_client)
    assert all(done[label] >= 1 for label in labels)  # none lost
    for label in interrupted:
        hosts = [event["hostname"] for event in probe_tasks.events(redis_client) if event["label"] == label]
        assert hosts[0] == "first@test" and "second@test" in hosts[1:]
