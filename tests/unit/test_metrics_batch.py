"""The metrics batcher: handlers cost no Redis command; a flush writes exact sums; nothing is lost."""

from __future__ import annotations

import os

import redis
from bookgen_worker.config import Settings
from bookgen_worker.metrics.batch import Batcher
from bookgen_worker.metrics.signals import count_celery, flush

from tests.support.redis_server import free_port


def commands(client: redis.Redis) -> int:
    return sum(int(v["calls"]) for k, v in client.info("commandstats").items() if k.startswith("cmdstat_hincrby"))


def test_adds_cost_no_command_and_one_flush_writes_exact_sums(redis_url: str, redis_client: redis.Redis) -> None:
    batcher = Batcher(interval=3600)  # no background flush during the test
    client = redis.Redis.from_url(redis_url)
    redis_client.config_resetstat()
    for _ in range(500):
        batcher.add(redis_url, lambda: client, "h", "a")
        batcher.add(redis_url, lambda: client, "h", "sum", 0.25)
    batcher.add(redis_url, lambda: client, "h", "zero", 0)
    assert commands(redis_client) == 0
    assert batcher.flush()
    assert redis_client.hgetall("h") == {b"a": b"500", b"sum": b"125", b"zero": b"0"}
    assert commands(redis_client) == 3  # one HINCRBY(FLOAT) per distinct field, not per task
    assert batcher.pending_count() == 0


def test_a_failed_flush_keeps_the_batch_for_the_next_one(redis_url: str, redis_client: redis.Redis) -> None:
    batcher = Batcher(interval=3600)
    dead = redis.Redis(port=free_port(), socket_connect_timeout=0.5)
    live = redis.Redis.from_url(redis_url)
    target = {"client": dead}
    for _ in range(7):
        batcher.add(redis_url, lambda: target["client"], "h", "a")
    assert not batcher.flush()  # Redis unreachable: kept
    assert batcher.pending_count() == 1
    batcher.add(redis_url, lambda: target["client"], "h", "a")
    target["client"] = live
    assert batcher.flush()
    assert redis_client.hget("h", "a") == b"8"


def test_a_forked_child_does_not_write_its_parents_batch(redis_url: str, redis_client: redis.Redis) -> None:
    batcher = Batcher(interval=3600)
    client = redis.Redis.from_url(redis_url)
    batcher.add(redis_url, lambda: client, "h", "parent")
    pid = os.fork()
    if pid == 0:  # the child: its buffer starts empty
        os._exit(0 if batcher.pending_count() == 0 and batcher.flush() else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert redis_client.hget("h", "parent") is None
    assert batcher.flush()
    assert redis_client.hget("h", "parent") == b"1"


def test_the_first_worker_event_creates_every_celery_counter_at_zero(redis_url: str, redis_client: redis.Redis) -> None:
    settings = Settings(redis_url=redis_url)
    count_celery(settings, "received", "bookgen.t-init", "host-a", "export")
    count_celery(settings, "received", "bookgen.t-init", "host-a", "export")
    assert flush()
    fields = {k.decode(): int(v) for k, v in redis_client.hgetall("bookgen:metrics:celery:tasks").items()}
    assert fields["received|bookgen.t-init|host-a|export|"] == 2
    for kind in ("sent", "started", "succeeded", "failed", "rejected", "revoked", "retried"):
        assert fields[f"{kind}|bookgen.t-init|host-a|export|"] == 0
