"""A Prometheus collector that reads Redis on every scrape, in the one process that serves HTTP.

Why not gauges set by the monitoring tasks: under prefork those tasks run in pool children, so
their gauges live in another process than the HTTP server (and die when a child is recycled), and
prometheus_client's multiprocess mode forbids custom collectors and leaves files behind. Everything
here is state in Redis (queues, the worker registry, task counters written by signals), so the
numbers are the same whichever process serves them and survive any recycling.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator, Sequence

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from ..config import Settings
from ..queues import QUEUES, TASK_TYPES, task_name
from . import celery_family
from .keys import CELERY_COUNTERS, CELERY_RUNTIME, SNAPSHOT, TASK_COUNTERS, TASK_RUNTIME, key
from .measure import Snapshot, measure
from .signals import KINDS, RUNTIME_BUCKETS, SEPARATOR, bucket_label, host_of
from .workers import SWEEP_AFTER, WorkerInfo, read_workers

#: A worker counts as online when it reported within this many seconds (it publishes every second).
ONLINE_MAX_AGE = 10.0

logger = logging.getLogger(__name__)

COUNTER_NAMES = {
    "sent": "bookgen_tasks_sent_total",
    "succeeded": "bookgen_tasks_succeeded_total",
    "failed": "bookgen_tasks_failed_total",
    "retried": "bookgen_tasks_retried_total",
    "dead_lettered": "bookgen_tasks_dead_lettered_total",
}


class BookGenCollector(Collector):
    def __init__(self, client: redis.Redis, settings: Settings, queues: Sequence[str] = QUEUES) -> None:
        self.client = client
        self.settings = settings
        self.queues = tuple(queues)
        self.last_success: float | None = None
        self._host_memory: dict[str, tuple[float, float]] = {}

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("bookgen_redis_up", "1 when the last scrape could read Redis, else 0")
        try:
            known = read_workers(self.client, self.settings, max_age=SWEEP_AFTER)
            workers = [w for w in known if time.time() - w.updated_at <= ONLINE_MAX_AGE]
            queues = sorted(set(self.queues) | {q for w in workers for q in w.queues}, key=self._order)
            snapshot = measure(self.client, self.settings, queues)
            with self.client.pipeline(transaction=False) as pipe:
                for name in (TASK_COUNTERS, TASK_RUNTIME, CELERY_COUNTERS, CELERY_RUNTIME):
                    pipe.hgetall(key(self.settings, name))
                pipe.get(key(self.settings, SNAPSHOT))
                pipe.info("memory")
                counters, runtimes, celery_counters, celery_runtimes, stored, memory = pipe.execute()
            self._purge(celery_counters, celery_runtimes, {host_of(w.hostname) for w in workers})
        except (redis.exceptions.RedisError, OSError) as exc:
            logger.warning("metrics scrape could not read Redis: %s", exc)
            up.add_metric([], 0)
            yield up
            yield from self._last_measurement()
            return
        up.add_metric([], 1)
        yield up
        self.last_success = max(snapshot.measured_at, _stored_time(stored))
        yield from queue_metrics(snapshot)
        yield from memory_metrics(memory)
        yield from pool_metrics(workers, queues, {w.pool for w in known})
        yield from counter_metrics(counters, INITIAL_SERIES)
        yield runtime_histogram(runtimes)
        yield from celery_family.counter_metrics(celery_counters)
        yield celery_family.runtime_histogram(celery_runtimes)
        yield from celery_family.worker_metrics(known, workers)
        yield from celery_family.queue_metrics(snapshot, workers, queues)
        yield from self._last_measurement()

    def _purge(self, counters: dict[bytes, bytes], runtimes: dict[bytes, bytes], online_hosts: set[str]) -> None:
        """Delete the celery_* series of hosts gone for long (autoscaled pods would pile up forever)."""
        stale, self._host_memory = celery_family.stale_hosts(
            celery_family.host_totals(counters), self._host_memory, online_hosts, time.time())
        if not stale:
            return
        for name, raw, index in ((CELERY_COUNTERS, counters, 2), (CELERY_RUNTIME, runtimes, 1)):
            fields = celery_family.fields_of_hosts(list(raw), stale, index)
            for field in fields:
                raw.pop(field, None)
            if fields:
                self.client.hdel(key(self.settings, name), *fields)
        logger.info("purged celery_* series of hosts gone for %.0f s: %s", celery_family.PURGE_AFTER, sorted(stale))

    def _order(self, queue: str) -> tuple[int, str]:
        return (self.queues.index(queue) if queue in self.queues else len(self.queues), queue)

    def _last_measurement(self) -> Iterator[Metric]:
        if self.last_success is not None:
            yield GaugeMetricFamily(
                "bookgen_last_measurement_timestamp_seconds",
                "Unix time of the last successful queue measurement",
                value=self.last_success,
            )


def _stored_time(raw: bytes | None) -> float:
    if not raw:
        return 0.0
    try:
        return float(json.loads(raw)["measured_at"])
    except (ValueError, KeyError, TypeError):
        return 0.0


def queue_metrics(snapshot: Snapshot) -> Iterator[Metric]:
    pending = GaugeMetricFamily("bookgen_queue_pending", "Tasks waiting, summed over every priority list",
                                labels=["queue"])
    in_flight = GaugeMetricFamily("bookgen_queue_in_flight", "Tasks delivered to a worker and not yet acknowledged",
                                  labels=["queue"])
    oldest = GaugeMetricFamily("bookgen_queue_oldest_pending_age_seconds",
                               "Age of the oldest waiting task (0 when none waits)", labels=["queue"])
    for name, depth in snapshot.queues.items():
        pending.add_metric([name], depth.pending)
        in_flight.add_metric([name], depth.in_flight)
        oldest.add_metric([name], depth.oldest_pending_age or 0.0)
    dead = GaugeMetricFamily("bookgen_dead_letter_queue_size", "Tasks in the dead-letter queue",
                             value=snapshot.dead_letters)
    yield from (pending, in_flight, oldest, dead)


def memory_metrics(info: dict[str, object]) -> Iterator[Metric]:
    """Redis's INFO memory: what it holds and its maxmemory. At maxmemory a queue's Redis (noeviction)
    refuses new submissions; BookGenRedisMemoryHigh fires before that."""
    yield GaugeMetricFamily("bookgen_redis_memory_used_bytes", "Memory Redis uses (INFO used_memory)",
                            value=float(str(info.get("used_memory", 0))))
    yield GaugeMetricFamily("bookgen_redis_memory_max_bytes",
                            "Redis's maxmemory (0 = no limit); writes are refused above it, nothing is evicted",
                            value=float(str(info.get("maxmemory", 0))))


def pool_metrics(workers: Sequence[WorkerInfo], queues: Sequence[str], pools: Iterable[str] = ()) -> Iterator[Metric]:
    """Per pool: the online workers, plus 0 for `pools` seen recently whose workers are all gone."""
    online = GaugeMetricFamily("bookgen_pool_workers_online", "Workers of the pool that reported in the last 10 s",
                               labels=["pool"])
    busy = GaugeMetricFamily("bookgen_pool_busy_slots", "Worker slots running a task", labels=["pool"])
    slots = GaugeMetricFamily("bookgen_pool_slots", "Worker slots (concurrency summed over online workers)",
                              labels=["pool"])
    for pool in sorted(set(pools) | {w.pool for w in workers}):
        members = [w for w in workers if w.pool == pool]
        online.add_metric([pool], len(members))
        busy.add_metric([pool], sum(w.busy for w in members))
        slots.add_metric([pool], sum(w.concurrency for w in members))
    consumers = GaugeMetricFamily("bookgen_queue_workers_online", "Online workers consuming the queue",
                                  labels=["queue"])
    for queue in queues:
        consumers.add_metric([queue], sum(1 for w in workers if queue in w.queues))
    yield from (online, busy, slots, consumers)


#: Every task the app routes, with its queue: their counters are exported at 0 before the first event,
#: so rate() panels and ratios have a series (an empty panel reads as "no data", not as "no failure").
INITIAL_SERIES: tuple[tuple[str, str], ...] = tuple(
    (task_name(short), queue) for queue, names in TASK_TYPES.values() for short in names
)


def counter_metrics(raw: dict[bytes, bytes], initial: Iterable[tuple[str, str]] = ()) -> Iterator[Metric]:
    values: dict[tuple[str, str, str], float] = {(kind, task, queue): 0.0 for kind in KINDS for task, queue in initial}
    for field, value in raw.items():
        parts = field.decode(errors="replace").split(SEPARATOR)
        if len(parts) == 3 and parts[0] in KINDS:
            values[(parts[0], parts[1], parts[2])] = float(value)
    families = {
        kind: CounterMetricFamily(name, f"Tasks {kind.replace('_', '-')}, per task name and queue",
                                  labels=["task", "queue"])
        for kind, name in COUNTER_NAMES.items()
    }
    for (kind, task, queue), count in sorted(values.items()):
        families[kind].add_metric([task, queue], count)
    yield from families.values()


def runtime_histogram(raw: dict[bytes, bytes]) -> Metric:
    histogram = HistogramMetricFamily("bookgen_task_runtime_seconds", "Task run time in a worker",
                                      labels=["task", "queue"])
    series: dict[tuple[str, str], dict[str, float]] = {}
    for field, value in raw.items():
        parts = field.decode(errors="replace").split(SEPARATOR)
        if len(parts) == 3:
            series.setdefault((parts[0], parts[1]), {})[parts[2]] = float(value)
    for (task, queue), values in sorted(series.items()):
        cumulative, buckets = 0.0, []
        for le in RUNTIME_BUCKETS:
            cumulative += values.get(bucket_label(le), 0.0)
            buckets.append((bucket_label(le), cumulative))
        histogram.add_metric([task, queue], buckets, sum_value=values.get("sum", 0.0))
    return histogram
