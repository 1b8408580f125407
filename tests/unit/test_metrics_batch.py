"""The metrics batcher: handlers cost no Redis command; a flush writes exact sums; nothing is lost."""

from __future__ import annotations

import os
import time

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


def test_a_histogram_buckets_like_the_linear_scan_it_replaces() -> None:
    from bookgen_worker.metrics.batch import Histogram
    from bookgen_worker.metrics.signals import CELERY_RUNTIME_BUCKETS, RUNTIME_BUCKETS, bucket_for

    for buckets in (RUNTIME_BUCKETS, CELERY_RUNTIME_BUCKETS):
        histogram = Histogram("h", "b|", buckets, tuple(bucket_for(le, buckets) for le in buckets))
        values = [0.0, -1.0, 1e-9, 7200.0, float("inf"), float("nan")]
        values += [v for le in buckets[:-1] for v in (le, le * (1 - 1e-12), le * (1 + 1e-12))]
        for value in values:
            assert histogram.bucket(value) == bucket_for(value, buckets), value


def test_recorded_slots_flush_as_exact_sums_and_a_fork_drops_the_parents(redis_url: str,
                                                                          redis_client: redis.Redis) -> None:
    from bookgen_worker.metrics.batch import Histogram, Slot

    batcher = Batcher(interval=3600)
    client = redis.Redis.from_url(redis_url)
    histogram = Histogram("r", "t|", (0.1, 1.0, float("inf")), ("0.1", "1.0", "+Inf"))
    counted = Slot(redis_url, lambda: client, (("h", "a", 1), ("h", "b", 2)))
    timed = Slot(redis_url, lambda: client, (("h", "a", 1),), histogram)
    for _ in range(300):
        batcher.record(counted)
    batcher.record(timed, 0.05)
    batcher.record(timed, 0.5)
    batcher.record(timed, None)  # no value: counted, nothing observed
    batcher.add(redis_url, lambda: client, "h", "a")  # the generic path adds to the same sums
    pid = os.fork()
    if pid == 0:  # the child neither sees nor writes what the parent recorded
        os._exit(0 if batcher.pending_count() == 0 and batcher.flush() else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert redis_client.hgetall("h") == {}
    assert batcher.pending_count() == 2 + 4  # h: a, b; r: two buckets, count, sum
    assert batcher.flush()
    assert redis_client.hgetall("h") == {b"a": b"304", b"b": b"600"}
    assert redis_client.hgetall("r") == {b"t|0.1": b"1", b"t|1.0": b"1", b"t|count": b"2", b"t|sum": b"0.55"}


def test_events_recorded_while_flushing_from_threads_are_all_counted(redis_url: str,
                                                                    redis_client: redis.Redis) -> None:
    import threading

    from bookgen_worker.metrics.batch import Slot

    batcher = Batcher(interval=3600)
    client = redis.Redis.from_url(redis_url)
    slot = Slot(redis_url, lambda: client, (("h", "n", 1),))

    def produce() -> None:
        for n in range(20_000):
            batcher.record(slot)
            if n % 50 == 0:
                time.sleep(0)  # hand the GIL over, so flushes interleave with the appends

    producers = [threading.Thread(target=produce) for _ in range(3)]
    for thread in producers:
        thread.start()
    written = []
    while any(thread.is_alive() for thread in producers):
        assert batcher.flush()
        written.append(int(redis_client.hget("h", "n") or 0))
    for thread in producers:
        thread.join()
    assert batcher.flush()
    assert len(set(written)) > 2  # the flushes really ran while the producers recorded
    assert redis_client.hget("h", "n") == b"60000"
