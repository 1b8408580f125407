"""celery-exporter's family: names, label names and values as celery-exporter exposes them."""

from __future__ import annotations

import time

from bookgen_worker.metrics import celery_family
from bookgen_worker.metrics.measure import QueueDepth, Snapshot
from bookgen_worker.metrics.workers import WorkerInfo
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families


def exposition(*metrics: object) -> dict[str, list[tuple[dict[str, str], float]]]:
    class One:
        def collect(self):  # type: ignore[no-untyped-def]
            return list(metrics)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(One())  # type: ignore[arg-type]
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


def worker(name: str, queues: tuple[str, ...], busy: int, age: float = 0.0, concurrency: int = 2) -> WorkerInfo:
    return WorkerInfo(name, name.split("@")[0], "pod", 1, queues, concurrency, busy, time.time() - age)


def test_counter_names_and_labels_match_celery_exporter() -> None:
    raw = {b"failed|t|h|q|ValueError": b"2", b"succeeded|t|h|q|": b"5", b"sent|t|p|q|": b"7"}
    out = exposition(*celery_family.counter_metrics(raw))
    assert out["celery_task_failed_total"] == [({"name": "t", "hostname": "h", "exception": "ValueError",
                                                 "queue_name": "q"}, 2.0)]
    assert out["celery_task_succeeded_total"] == [({"name": "t", "hostname": "h", "queue_name": "q"}, 5.0)]
    assert out["celery_task_sent_total"] == [({"name": "t", "hostname": "p", "queue_name": "q"}, 7.0)]


def test_runtime_histogram_uses_prometheus_default_buckets_cumulatively() -> None:
    raw = {b"t|h|q|0.1": b"1", b"t|h|q|1.0": b"2", b"t|h|q|count": b"3", b"t|h|q|sum": b"1.7"}
    out = exposition(celery_family.runtime_histogram(raw))
    buckets = {labels["le"]: v for labels, v in out["celery_task_runtime_bucket"]}
    assert buckets["0.005"] == 0 and buckets["0.1"] == 1 and buckets["1.0"] == 3 and buckets["+Inf"] == 3
    assert out["celery_task_runtime_count"][0][1] == 3 and out["celery_task_runtime_sum"][0][1] == 1.7


def test_workers_per_host_up_and_active_and_queue_consumers() -> None:
    online = [worker("content@pod-a", ("content_generation", "high_priority"), 1),
              worker("validation@pod-a", ("validation",), 2)]
    gone = worker("export@pod-b", ("export",), 1, age=60)
    out = exposition(*celery_family.worker_metrics([*online, gone], online))
    assert sorted(out["celery_worker_up"], key=str) == [({"hostname": "pod-a"}, 1.0), ({"hostname": "pod-b"}, 0.0)]
    assert dict((lbl["hostname"], v) for lbl, v in out["celery_worker_tasks_active"]) == {"pod-a": 3, "pod-b": 0}
    snapshot = Snapshot({"export": QueueDepth("export", 4, 1, 3.0)}, 0, time.time())
    out = exposition(*celery_family.queue_metrics(snapshot, online, ["export", "validation"]))
    assert out["celery_queue_length"] == [({"queue_name": "export"}, 4.0)]
    assert dict((lbl["queue_name"], v) for lbl, v in out["celery_active_process_count"]) == {
        "export": 0, "validation": 2}
    assert dict((lbl["queue_name"], v) for lbl, v in out["celery_active_consumer_count"]) == {
        "export": 0, "validation": 1}


def test_a_silent_offline_host_is_purged_after_ten_minutes_and_an_online_one_never() -> None:
    totals = {"gone": 5.0, "alive": 5.0}
    stale, memory = celery_family.stale_hosts(totals, {}, {"alive"}, now=0)
    assert not stale
    stale, memory = celery_family.stale_hosts(totals, memory, {"alive"}, now=599)
    assert not stale
    stale, memory = celery_family.stale_hosts(totals, memory, {"alive"}, now=600)
    assert stale == {"gone"} and "gone" not in memory
    stale, _ = celery_family.stale_hosts({"alive": 5.0}, memory, {"alive"}, now=10_000)
    assert not stale


def test_the_collector_deletes_the_series_of_a_host_gone_for_ten_minutes(redis_url: str) -> None:
    import redis as redis_lib
    from bookgen_worker.config import Settings
    from bookgen_worker.metrics.collector import BookGenCollector
    from bookgen_worker.metrics.signals import count_celery, flush, observe_celery_runtime

    settings = Settings(redis_url=redis_url)
    for host in ("gone-pod", "live-pod"):
        count_celery(settings, "received", "bookgen.t", host, "export")
        observe_celery_runtime(settings, "bookgen.t", host, "export", 0.2)
    assert flush()
    client = redis_lib.Redis.from_url(redis_url)
    collector = BookGenCollector(client, settings)
    list(collector.collect())  # first sight of both hosts: nothing purged
    # Ten minutes later with unchanged counts and no online worker on either host: both go, from Redis too.
    collector._host_memory = {host: (total, since - 600) for host, (total, since) in collector._host_memory.items()}
    collector._host_memory.pop("live-pod")  # ...except live-pod, seen for the first time now
    families = {m.name: m for m in collector.collect()}
    hosts = {s.labels["hostname"] for s in families["celery_task_received"].samples}
    assert hosts == {"live-pod"}
    fields = [f.decode() for f in client.hkeys("bookgen:metrics:celery:tasks")]
    assert fields and not [f for f in fields if "gone-pod" in f]
    assert not [f.decode() for f in client.hkeys("bookgen:metrics:celery:runtime") if b"gone-pod" in f]
