"""Priorities and routing, proved with a real redis-server and real `celery worker` processes."""

from __future__ import annotations

from pathlib import Path

import redis
from bookgen_worker.app import bookgen_settings
from bookgen_worker.queues import ALL_TASKS, DEFAULT, DEFAULT_POOLS, QUEUES, priority_list_keys, queue_for_task
from celery import Celery

from tests.support import probe_tasks
from tests.support.waiting import wait_for
from tests.support.workers import running_worker


def pending_per_queue(client: redis.Redis, app: Celery) -> dict[str, int]:
    settings = bookgen_settings(app)
    return {
        queue: sum(
            int(client.llen(key))
            for key in priority_list_keys(queue, settings.priority_steps, settings.priority_separator)
        )
        for queue in QUEUES
    }


def test_a_priority_10_task_sent_after_ten_priority_0_tasks_runs_first(
    celery_app: Celery, redis_client: redis.Redis, workdir: Path
) -> None:
    for index in range(10):
        probe_tasks.record.submit(f"routine-{index}", priority=0)
    probe_tasks.record.submit("urgent", priority=10)

    with running_worker(redis_url=celery_app.conf.broker_url, queues=[DEFAULT], name="solo", workdir=workdir):
        wait_for(lambda: len(probe_tasks.done(redis_client)) == 11, timeout=60, what="all 11 tasks to run")

    order = [event["label"] for event in probe_tasks.events(redis_client)]
    assert order[0] == "urgent", order
    assert sorted(order[1:]) == sorted(f"routine-{index}" for index in range(10))


def test_a_priority_10_task_sent_after_ten_priority_9_tasks_runs_first(
    celery_app: Celery, redis_client: redis.Redis, workdir: Path
) -> None:
    for index in range(10):
        probe_tasks.record.submit(f"nine-{index}", priority=9)
    probe_tasks.record.submit("ten", priority=10)

    with running_worker(redis_url=celery_app.conf.broker_url, queues=[DEFAULT], name="solo", workdir=workdir):
        wait_for(lambda: len(probe_tasks.done(redis_client)) == 11, timeout=60, what="all 11 tasks to run")

    assert probe_tasks.events(redis_client)[0]["label"] == "ten"


def test_every_public_level_is_served_in_order_and_only_0_and_1_tie(
    celery_app: Celery, redis_client: redis.Redis, workdir: Path
) -> None:
    for priority in range(11):  # least urgent first: each later task must overtake every earlier one
        probe_tasks.record.submit(f"p{priority}", priority=priority)

    with running_worker(redis_url=celery_app.conf.broker_url, queues=[DEFAULT], name="solo", workdir=workdir):
        wait_for(lambda: len(probe_tasks.done(redis_client)) == 11, timeout=60, what="all 11 tasks to run")

    order = [event["label"] for event in probe_tasks.events(redis_client)]
    # 1 and 0 share kombu's last priority (9), first in first out between them: 0 was sent first.
    assert order == [f"p{p}" for p in range(10, 1, -1)] + ["p0", "p1"]


def test_every_task_lands_on_the_queue_its_name_routes_to(celery_app: Celery, redis_client: redis.Redis) -> None:
    for name in ALL_TASKS:
        celery_app.send_task(name)  # nobody consumes: we only look where each message landed

    expected = {queue: 0 for queue in QUEUES}
    for name in ALL_TASKS:
        expected[queue_for_task(name)] += 1
    assert pending_per_queue(redis_client, celery_app) == expected
    assert expected[DEFAULT] == 0  # every real task has a home other than the catch-all queue


def test_each_queue_is_consumed_only_by_the_pools_that_listen_to_it(
    celery_app: Celery, redis_client: redis.Redis, workdir: Path
) -> None:
    listeners = {queue: pool.name for pool in DEFAULT_POOLS for queue in pool.queues}
    with_listener = sorted(listeners)
    for queue in QUEUES:
        for index in range(3):
            probe_tasks.record.apply_async(args=(f"{queue}-{index}",), queue=queue)

    workers = [
        running_worker(
            redis_url=celery_app.conf.broker_url, queues=list(pool.queues), name=pool.name, workdir=workdir
        )
        for pool in DEFAULT_POOLS
    ]
    for worker in workers:
        worker.__enter__()
    try:
        wait_for(
            lambda: len(probe_tasks.done(redis_client)) == 3 * len(with_listener),
            timeout=60,
            what="every task on a listened-to queue to run",
        )
    finally:
        for worker in workers:
            worker.__exit__(None, None, None)

    ran = probe_tasks.events(redis_client)
    assert {event["queue"] for event in ran} == set(with_listener)
    for event in ran:
        assert event["hostname"] == f"{listeners[event['queue']]}@test", event
    # Nobody listens to `default` in BookGen's original topology: its tasks wait, they are not stolen.
    assert pending_per_queue(redis_client, celery_app)[DEFAULT] == 3
