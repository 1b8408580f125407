"""Redis restarting under busy workers (a failover, an upgrade, a crash) costs nothing but a pause.

One worker per default pool (its queues, concurrency and prefork pool) runs a task while Redis is
stopped (cleanly with SIGTERM, or killed with SIGKILL and its append-only file replayed) and started
again. Every worker must survive, keep consuming, and run no task twice: kombu's Redis transport used
to crash busy workers with a free slot here, and to lose the running task's acknowledgement, so it
ran again after the visibility timeout (see worker/bookgen_worker/patches/kombu_redis.py).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from bookgen_worker.app import app, configure_app
from bookgen_worker.config import settings_from_env
from bookgen_worker.queues import DEFAULT_POOLS

from tests.support import probe_tasks
from tests.support.redis_server import RedisServer, start_redis
from tests.support.waiting import wait_for
from tests.support.workers import FAST_TEST_ENV, WorkerProcess, start_worker

#: Long enough that every task is still running when Redis comes back.
TASK_SECONDS = 4.0


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[RedisServer]:
    data = tmp_path / "redis"
    data.mkdir()
    server = start_redis(data, aof=True)
    try:
        yield server
    finally:
        server.stop()


def send_one_per_pool(round_name: str, seconds: float) -> list[str]:
    labels = []
    for pool in DEFAULT_POOLS:
        label = f"{round_name}-{pool.name}"
        probe_tasks.record.apply_async(args=(label, seconds), queue=pool.queues[0])
        labels.append(label)
    return labels


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill-aof"])
def test_busy_workers_of_every_pool_survive_a_redis_restart_and_run_nothing_twice(
    aof_redis: RedisServer, tmp_path: Path, sig: int
) -> None:
    url = aof_redis.url()
    configure_app(app, settings_from_env({**FAST_TEST_ENV, "REDIS_URL": url}))
    client = redis.Redis.from_url(url)
    workers: list[WorkerProcess] = []
    try:
        for pool in DEFAULT_POOLS:
            workers.append(start_worker(
                redis_url=url, queues=pool.queues, name=pool.name, workdir=tmp_path, concurrency=pool.concurrency,
                extra_env={"BOOKGEN_POOL": pool.name, "BOOKGEN_METRICS_PORT": "off"},
            ))
        before = send_one_per_pool("before", TASK_SECONDS)
        wait_for(lambda: {e["label"] for e in probe_tasks.events(client)} >= set(before), timeout=30,
                 what="a task running on every pool")

        aof_redis.restart(sig)

        wait_for(lambda: set(probe_tasks.done(client)) >= set(before), timeout=60,
                 what="the tasks that ran through the restart to finish")
        after = send_one_per_pool("after", 0.0)
        wait_for(lambda: set(probe_tasks.done(client)) >= set(before + after), timeout=60,
                 what="every pool to consume again after the restart")
        # Acknowledgements land after the result: wait until nothing is left to be delivered again.
        wait_for(lambda: client.hlen("unacked") == 0, timeout=30,
                 what="every acknowledgement to reach Redis (an entry left here runs again later)")

        for worker in workers:
            assert worker.process.poll() is None, f"{worker.name} exited:\n{worker.log()[-3000:]}"
            assert "Unrecoverable error" not in worker.log(), worker.log()[-3000:]
        assert probe_tasks.done(client) == {label: 1 for label in before + after}
        starts = [event["label"] for event in probe_tasks.events(client)]
        assert sorted(starts) == sorted(before + after)  # each task started once: nothing was requeued
    finally:
        for worker in workers:
            worker.stop()
        client.close()
