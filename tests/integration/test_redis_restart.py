"""Redis restarting under busy workers (a failover, an upgrade, a crash) costs nothing but a pause.

One worker per default pool (its queues, concurrency and prefork pool) runs a task while Redis is
stopped (cleanly with SIGTERM, or killed with SIGKILL and its append-only file replayed) and started
again. Every worker must survive, keep consuming, and run no task twice: kombu's Redis transport used
to crash busy workers with a free slot here, and to lose the running task's acknowledgement, so it
ran again after the visibility timeout (see worker/bookgen_worker/patches/kombu_redis.py).
"""

from __future__ import annotations

import signal
import subprocess
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


#: How long Redis stays away after the task ended: what a pod rescheduled onto its volume can take,
#: and longer than Celery's default publish retry lasts (it fails this test without app.WORKER_PUBLISH_RETRY).
OUTAGE_SECONDS = 30.0


def test_a_task_that_ends_while_redis_is_away_still_sends_its_callback(aof_redis: RedisServer, tmp_path: Path) -> None:
    """Found on the real node: a chapter that ended while the Redis pod was being replaced could not
    publish its link callback, and Celery marked the finished task FAILED (and the book's step failed).
    A worker now keeps publishing until Redis is back (app.WORKER_PUBLISH_RETRY)."""
    import time

    url = aof_redis.url()
    configure_app(app, settings_from_env({**FAST_TEST_ENV, "REDIS_URL": url}))
    worker = start_worker(redis_url=url, queues=("content_generation",), name="content", workdir=tmp_path,
                          extra_env={"BOOKGEN_POOL": "content", "BOOKGEN_METRICS_PORT": "off"})
    started, finished = tmp_path / "started", tmp_path / "finished"
    try:
        probe_tasks.sleep_then_mark.apply_async(
            args=(str(started), 1.0, str(finished)), queue="content_generation",
            link=probe_tasks.record.si("callback").set(queue="content_generation"))
        wait_for(started.exists, timeout=30, what="the task running")
        aof_redis.process.send_signal(signal.SIGTERM)  # Redis goes away while the task still runs
        aof_redis.process.wait(timeout=30)
        wait_for(finished.exists, timeout=30, what="the task ending while Redis is away")
        time.sleep(OUTAGE_SECONDS)  # the outage itself, not a wait for a condition
        aof_redis.restart(signal.SIGTERM)  # already stopped: starts it again on its data
        client = redis.Redis.from_url(url)
        try:
            wait_for(lambda: probe_tasks.done(client).get("callback") == 1, timeout=60,
                     what="the callback, published once Redis was back")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{worker.log()[-4000:]}") from None
        from bookgen_worker import deadletter

        assert [e["label"] for e in probe_tasks.events(client)] == ["callback"], "the callback ran once"
        assert len(started.read_text().splitlines()) == 1, "the task ran once"

        assert deadletter.entries(settings_from_env({**FAST_TEST_ENV, "REDIS_URL": url})) == []
        assert "raised unexpected" not in worker.log(), worker.log()[-3000:]
        client.close()
    finally:
        worker.stop()


def test_a_warm_shutdown_with_redis_unreachable_ends_within_seconds(aof_redis: RedisServer, tmp_path: Path) -> None:
    """Found on the real node: deleting a queue's namespace took its Redis away; with events on (Flower
    turns them on) the worker's heartbeat publish retried for ever and SIGTERM was not acted on until
    the pod's grace period (an hour) ran out. Here Redis is frozen (SIGSTOP: a partition, sockets open,
    no answer), so the heartbeat's publish is what the main loop is stuck in when SIGTERM comes. The
    warm shutdown now ends once no task runs (bookgen_worker/shutdown.py)."""
    import time

    url = aof_redis.url()
    worker = start_worker(redis_url=url, queues=("content_generation",), name="content", workdir=tmp_path,
                          extra_env={"BOOKGEN_POOL": "content", "BOOKGEN_METRICS_PORT": "off",
                                     "BOOKGEN_TASK_EVENTS": "true"})
    try:
        wait_for(lambda: "ready." in worker.log(), timeout=60, what="the worker consuming")
        aof_redis.process.send_signal(signal.SIGSTOP)
        # The worker's heartbeat (every 2 s with events on) is now blocked on the frozen Redis.
        time.sleep(4)  # the partition itself, long enough for a heartbeat to be sent into it
        started = time.monotonic()
        worker.process.send_signal(signal.SIGTERM)
        try:
            code: int | None = worker.process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            code = None
        took = time.monotonic() - started
        assert code == 0 and took < 30, f"exit {code} after {took:.0f} s:\n{worker.log()[-3000:]}"
    finally:
        aof_redis.process.send_signal(signal.SIGCONT)
        worker.stop()
