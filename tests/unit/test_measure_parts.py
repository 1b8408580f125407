"""The pieces around measure(): registry, collector edge cases, endpoint port, heartbeat probe, beat."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import redis
from bookgen_worker.beat import beat_schedule
from bookgen_worker.config import ConfigError, Settings
from bookgen_worker.heartbeat import check, touch
from bookgen_worker.heartbeat import main as heartbeat_main
from bookgen_worker.metrics.collector import BookGenCollector, runtime_histogram
from bookgen_worker.metrics.exporter import metrics_port
from bookgen_worker.metrics.keys import TASK_RUNTIME, WORKERS
from bookgen_worker.metrics.signals import count_task, flush, observe_runtime
from bookgen_worker.metrics.workers import WorkerInfo, pool_name, publish, read_workers, sweep
from bookgen_worker.queues import MONITORING, task_name
from prometheus_client import CollectorRegistry, generate_latest
from redis.backoff import NoBackoff
from redis.retry import Retry


def info(hostname: str, updated_at: float, busy: int = 0, pool: str = "content") -> WorkerInfo:
    return WorkerInfo(hostname, pool, "pod-1", 42, ("content_generation",), 2, busy, updated_at)


def test_registry_returns_only_fresh_workers_and_sweeps_the_long_gone(redis_client: redis.Redis) -> None:
    settings = Settings(global_keyprefix="p:")
    now = 1000.0
    publish(redis_client, settings, info("a@h", now - 1, busy=2))
    publish(redis_client, settings, info("b@h", now - 11))
    publish(redis_client, settings, info("c@h", now - 400))
    redis_client.hset("p:" + WORKERS, "junk", "not json")

    assert read_workers(redis_client, settings, max_age=10, now=now) == [info("a@h", now - 1, busy=2)]
    assert sweep(redis_client, settings, now=now) == 2  # c (old) and the junk entry
    assert sorted(redis_client.hkeys("p:" + WORKERS)) == [b"a@h", b"b@h"]


def test_pool_name_comes_from_env_else_the_node_name() -> None:
    assert pool_name("export@host-1", {"BOOKGEN_POOL": "exports"}) == "exports"
    assert pool_name("export@host-1", {}) == "export"


@pytest.mark.parametrize(
    ("env", "queues", "port"),
    [
        ({}, [MONITORING], 9808),
        ({}, ["export"], None),
        ({"BOOKGEN_METRICS_PORT": "9100"}, ["export"], 9100),
        ({"BOOKGEN_METRICS_PORT": "off"}, [MONITORING], None),
    ],
)
def test_the_endpoint_is_served_by_the_monitoring_worker_or_where_a_port_is_set(
    env: dict[str, str], queues: list[str], port: int | None
) -> None:
    assert metrics_port(env, queues) == port


@pytest.mark.parametrize("raw", ["http", "70000"])
def test_a_bad_metrics_port_is_a_one_line_config_error(raw: str) -> None:
    with pytest.raises(ConfigError, match="BOOKGEN_METRICS_PORT"):
        metrics_port({"BOOKGEN_METRICS_PORT": raw}, [])


def test_unreachable_redis_is_reported_as_down_not_as_an_error() -> None:
    client = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
    registry = CollectorRegistry(auto_describe=False)
    collector = BookGenCollector(client, Settings())
    collector.last_success = 123.0
    registry.register(collector)
    text = generate_latest(registry).decode()
    assert "bookgen_redis_up 0.0" in text
    assert "bookgen_last_measurement_timestamp_seconds 123.0" in text
    assert "bookgen_queue_pending" not in text  # no made-up numbers


def test_counters_and_runtime_histogram_are_cumulative_in_the_exposition(
    redis_url: str, redis_client: redis.Redis
) -> None:
    settings = Settings(redis_url=redis_url)
    for seconds in (0.01, 0.3, 0.3, 7.0):
        observe_runtime(settings, "bookgen.x", "export", seconds)
    count_task(settings, "failed", "bookgen.x", "export")
    assert flush()  # the handlers batch in memory; this writes the batch
    histogram = runtime_histogram(redis_client.hgetall(TASK_RUNTIME))
    buckets = {s.labels["le"]: s.value for s in histogram.samples if s.name.endswith("_bucket")}
    assert buckets["0.05"] == 1 and buckets["0.5"] == 3 and buckets["5.0"] == 3 and buckets["10.0"] == 4
    assert buckets["+Inf"] == 4
    assert [s.value for s in histogram.samples if s.name.endswith("_sum")] == [pytest.approx(7.61)]
    counters = {k.decode(): int(v) for k, v in redis_client.hgetall("bookgen:metrics:tasks").items()}
    assert counters == {"failed|bookgen.x|export": 1}


def test_heartbeat_probe_passes_fresh_and_fails_stale_or_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "hb" / "beat"
    assert "does not exist" in (check(path, 60) or "")
    touch(path)
    assert check(path, 60) is None
    old = time.time() - 120
    os.utime(path, (old, old))
    assert heartbeat_main(["--check", str(path), "--max-age", "60"]) == 1
    assert "old" in capsys.readouterr().err
    touch(path)
    assert heartbeat_main(["--check", str(path)]) == 0


def test_beat_runs_every_monitoring_task_on_the_monitoring_queue_at_the_configured_pace() -> None:
    schedule = beat_schedule(Settings(queue_stats_interval=2.5))
    tasks = {entry["task"]: entry for entry in schedule.values()}
    assert set(tasks) == {task_name(t) for t in ("get_queue_stats", "get_worker_stats", "health_check",
                                                  "cleanup_expired_results", "process_dead_letter_queue",
                                                  "job.sweep")}
    assert tasks[task_name("get_queue_stats")]["schedule"] == 2.5
    assert tasks[task_name("health_check")]["schedule"] == 300
    assert tasks[task_name("cleanup_expired_results")]["schedule"] == 3600
    assert all(entry["options"]["queue"] == MONITORING for entry in schedule.values())


def test_a_pool_whose_workers_stopped_reporting_shows_zero_online(redis_url: str, redis_client: redis.Redis) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    settings = Settings(redis_url=redis_url)
    now = time.time()
    publish(redis_client, settings, WorkerInfo("c@h", "content", "p1", 1, ("content_generation",), 2, 1, now))
    publish(redis_client, settings, WorkerInfo("e@h", "export", "p2", 2, ("export",), 1, 1, now - 60))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BookGenCollector(redis_client, settings))
    samples = {
        (s.name, tuple(s.labels.values())): s.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
    }
    assert samples[("bookgen_pool_workers_online", ("content",))] == 1
    assert samples[("bookgen_pool_busy_slots", ("content",))] == 1
    assert samples[("bookgen_pool_slots", ("content",))] == 2
    assert samples[("bookgen_pool_workers_online", ("export",))] == 0
    assert samples[("bookgen_pool_busy_slots", ("export",))] == 0
    assert samples[("bookgen_queue_workers_online", ("export",))] == 0
    assert samples[("bookgen_queue_workers_online", ("content_generation",))] == 1
    assert ("bookgen_pool_workers_online", ("validation",)) not in samples  # never seen: not invented
