"""A full Redis (maxmemory reached, noeviction) refuses new work and loses nothing, and recovers by itself.

A real redis-server with a small maxmemory and `maxmemory-policy noeviction` (what the operator and
`bookgen up` run) is filled with queued tasks while no worker runs. Then:
- `bookgen submit` fails with one line naming the cause, a non-zero status and no traceback, and
  leaves no job behind;
- every queued task is still there; a real worker started at the full Redis takes them all (kombu's
  delivery bookkeeping goes through patches/kombu_full.py), runs each once and acknowledges it; a task
  whose own write Redis refuses goes back to its queue and runs once there is room;
- once the queue has drained and the other data is gone, the same `bookgen submit` works, without
  restarting anything.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from bookgen_worker.app import app, configure_app
from bookgen_worker.config import settings_from_env
from bookgen_worker.errors import RedisFull
from bookgen_worker.jobs import store

from tests.support import probe_tasks
from tests.support.redis_server import RedisServer, start_redis
from tests.support.waiting import wait_for
from tests.support.workers import FAST_TEST_ENV, REPO_ROOT, start_worker

QUEUE = "export"
#: Room left for queued tasks once the filler is in: a few dozen messages, so the test stays quick.
ROOM_FOR_TASKS = 600_000


@pytest.fixture
def full_redis(tmp_path: Path) -> Iterator[RedisServer]:
    data = tmp_path / "redis"
    data.mkdir()
    server = start_redis(data, extra=("--maxmemory", "16mb", "--maxmemory-policy", "noeviction"))
    try:
        yield server
    finally:
        server.stop()


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def queued(client: redis.Redis) -> int:
    """Messages waiting in every priority list of the queue."""
    return sum(int(client.llen(key)) for key in client.keys(f"{QUEUE}*"))


def fill_with_tasks(client: redis.Redis, workdir: Path) -> list[str]:
    """One task that writes to Redis itself (probe.record), other data up to ROOM_FOR_TASKS below
    maxmemory, then tasks until Redis refuses one; returns the tasks' marker files."""
    # No results, as for a job's steps: stored results would take the room the drain frees (docs/tasks.md).
    # Sent first, so the client connections it opens (their buffers count as used memory) are there.
    probe_tasks.record.apply_async(args=("needs-room",), queue=QUEUE, ignore_result=True)
    maxmemory = int(client.config_get("maxmemory")["maxmemory"])
    while used_memory(client) < maxmemory - ROOM_FOR_TASKS:  # in pieces: a command's own buffer counts too
        client.rpush("filler", *[b"x" * 1024] * 16)
    finished: list[str] = []
    while True:
        marker = str(workdir / f"done-{len(finished)}")
        try:
            probe_tasks.sleep_then_mark.apply_async(args=(str(workdir / "started"), 0.0, marker), queue=QUEUE,
                                                    ignore_result=True)
        except Exception as exc:
            assert "command not allowed when used memory" in str(exc), exc
            return finished
        finished.append(marker)


def bookgen(url: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """The real command line, in its own process: what a user sees, traceback or not."""
    env = {**os.environ, "REDIS_URL": url,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))}
    env.pop("BOOKGEN_DEBUG", None)
    command = [sys.executable, "-c", "import sys; from bookgen_operator.cli import main; sys.exit(main())", *argv]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)


def job_keys(client: redis.Redis) -> list[Any]:
    return [*client.keys("bookgen:job:*"), *client.zrange("bookgen:jobs", 0, -1)]


def test_a_full_redis_refuses_submissions_in_one_line_keeps_every_task_and_recovers_when_they_drain(
    full_redis: RedisServer, tmp_path: Path
) -> None:
    url = full_redis.url()
    configure_app(app, settings_from_env({**FAST_TEST_ENV, "REDIS_URL": url}))
    client = full_redis.client()
    markers = fill_with_tasks(client, tmp_path)
    waiting = queued(client)
    assert waiting == len(markers) + 1 >= 20  # the probe.record task and the sleep_then_mark ones
    assert used_memory(client) > int(client.config_get("maxmemory")["maxmemory"])

    refused = bookgen(url, "submit", "Ada Lovelace", "--chapters", "1")
    assert refused.returncode != 0
    assert refused.stderr.startswith("bookgen: error: the queue's Redis is full (maxmemory reached)")
    assert "try again when jobs drain, or raise the Redis memory limit" in refused.stderr
    assert refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr, refused.stderr
    assert refused.stdout == ""
    assert job_keys(client) == []  # no job, not even half of one
    assert queued(client) == waiting  # nothing already queued was lost

    # A worker started at the full Redis (a restart, the autoscaler adding one for the backlog) runs.
    worker = start_worker(redis_url=url, queues=[QUEUE], name="full", workdir=tmp_path,
                          extra_env={"BOOKGEN_METRICS_PORT": "off"})
    try:
        wait_for(lambda: all(Path(m).exists() for m in markers), timeout=120,
                 what="every task queued at the full Redis to run")
        wait_for(lambda: client.hlen("unacked") == 0 and queued(client) <= 1, timeout=30,
                 what="every task that needs no write of its own to be acknowledged")
        started = (tmp_path / "started").read_text().split()
        assert len(started) == len(set(started)) == len(markers)  # each ran once
        # probe.record, taken first at the full Redis, had its own write refused and went back to the queue's
        # end (the log says so below); it has run once by now if the drain freed enough, else it waits.
        assert probe_tasks.done(client).get("needs-room", 0) <= 1

        client.delete("filler")  # the rest of the room frees: as results expire, or jobs age out

        wait_for(lambda: probe_tasks.done(client).get("needs-room") == 1, timeout=60,
                 what="the task whose own write was refused to run once there was room")
        wait_for(lambda: client.hlen("unacked") == 0 and queued(client) == 0, timeout=30,
                 what="every task to be acknowledged")
        assert worker.process.poll() is None, "the worker must survive a full Redis"
        log = worker.log()
        assert "record a delivered message went through as a memory-neutral script" in log
        assert "acknowledge a message went through as a memory-neutral script" in log
        assert "requeueing the task in 2s" in log
        assert "Unrecoverable error" not in log
    finally:
        worker.stop()

    accepted = bookgen(url, "submit", "Ada Lovelace", "--chapters", "1")
    assert accepted.returncode == 0, accepted.stderr
    job_id = accepted.stdout.strip()
    assert client.hget(f"bookgen:job:{job_id}", "state") == b"PENDING"
    assert full_redis.process.poll() is None  # the same server all along: no restart needed


def test_a_start_refused_after_the_job_was_stored_leaves_no_job(
    redis_url: str, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis can take the job's transaction and refuse the message that follows (the transaction
    crossed maxmemory): submit_job then removes the job, so its error is the whole truth."""
    settings = settings_from_env({**FAST_TEST_ENV, "REDIS_URL": redis_url})
    configure_app(app, settings)

    def refused(*_args: object) -> None:
        assert job_keys(redis_client), "the job is stored before its start is published"
        raise redis.exceptions.OutOfMemoryError("command not allowed when used memory > 'maxmemory'.")

    monkeypatch.setattr(store, "_publish", refused)
    with pytest.raises(RedisFull, match="the queue's Redis is full"):
        store.submit_job(settings, "Ada Lovelace", chapters=1, celery_app=app)
    assert job_keys(redis_client) == []
