"""celery-exporter's metric family, from the same Redis state as ours, so celery-mixin works unchanged.

celery-exporter (danihodovic/celery-exporter) builds its numbers from Celery events; we build the
same names, label names and meanings from our signal counters (signals.py), the worker registry and
measure(). Differences, all deliberate and documented in metrics/README.md:

- `celery_queue_length` is exact: pending over every priority list (celery-exporter: one LLEN).
- `celery_active_consumer_count` is reported on Redis too (celery-exporter: RabbitMQ only): one
  consumer per online worker consuming the queue.
- `celery_worker_up` is 1 for a worker that reported in the last 10 s and 0 for one last seen within
  5 minutes (celery-exporter: heartbeat seen within its worker timeout).
- Series of a host whose counters have not moved for PURGE_AFTER and that has no online worker are
  deleted, as celery-exporter purges offline workers' metrics after 10 minutes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from .measure import Snapshot
from .signals import CELERY_KINDS, CELERY_RUNTIME_BUCKETS, SEPARATOR, bucket_label, host_of
from .workers import WorkerInfo

#: Seconds after which a silent, offline host's series are purged (celery-exporter's default: 10 min).
PURGE_AFTER = 600.0

HELP = {
    "sent": "Sent when a task message is published.",
    "received": "Sent when the worker receives a task.",
    "started": "Sent just before the worker executes the task.",
    "succeeded": "Sent if the task executed successfully.",
    "failed": "Sent if the execution of the task failed.",
    "rejected": "The task was rejected by the worker, possibly to be re-queued or moved to a dead letter queue.",
    "revoked": "Sent if the task has been revoked.",
    "retried": "Sent if the task failed, but will be retried in the future.",
}


def _fields(raw: dict[bytes, bytes]) -> Iterator[tuple[list[str], float]]:
    for field, value in sorted(raw.items()):
        yield field.decode(errors="replace").split(SEPARATOR), float(value)


def counter_metrics(raw: dict[bytes, bytes]) -> Iterator[Metric]:
    """`celery_task_<kind>_total{name, hostname, queue_name}`; failed also carries `exception`."""
    families = {
        kind: CounterMetricFamily(
            f"celery_task_{kind}", HELP[kind],
            labels=["name", "hostname", "exception", "queue_name"] if kind == "failed"
            else ["name", "hostname", "queue_name"])
        for kind in CELERY_KINDS
    }
    for parts, value in _fields(raw):
        if len(parts) != 5 or parts[0] not in families:
            continue
        kind, name, host, queue, exception = parts
        labels = [name, host, exception, queue] if kind == "failed" else [name, host, queue]
        families[kind].add_metric(labels, value)
    yield from families.values()


def runtime_histogram(raw: dict[bytes, bytes]) -> Metric:
    histogram = HistogramMetricFamily("celery_task_runtime", "Histogram of task runtime measurements.",
                                      labels=["name", "hostname", "queue_name"])
    series: dict[tuple[str, str, str], dict[str, float]] = {}
    for parts, value in _fields(raw):
        if len(parts) == 4:
            series.setdefault((parts[0], parts[1], parts[2]), {})[parts[3]] = value
    for labels, values in sorted(series.items()):
        cumulative, buckets = 0.0, []
        for le in CELERY_RUNTIME_BUCKETS:
            cumulative += values.get(bucket_label(le), 0.0)
            buckets.append((bucket_label(le), cumulative))
        histogram.add_metric(list(labels), buckets, sum_value=values.get("sum", 0.0))
    return histogram


def worker_metrics(known: Sequence[WorkerInfo], online: Sequence[WorkerInfo]) -> Iterator[Metric]:
    """Per host (celery-exporter's `hostname` is the part after '@'): up = any worker online there."""
    up = GaugeMetricFamily("celery_worker_up", "Indicates if a worker has recently sent a heartbeat.",
                           labels=["hostname"])
    active = GaugeMetricFamily("celery_worker_tasks_active", "The number of tasks the worker is currently processing",
                               labels=["hostname"])
    online_names = {w.hostname for w in online}
    hosts: dict[str, tuple[int, int]] = {}
    for worker in known:
        host = host_of(worker.hostname)
        is_up = int(worker.hostname in online_names)
        was_up, busy = hosts.get(host, (0, 0))
        hosts[host] = (max(was_up, is_up), busy + (worker.busy if is_up else 0))
    for host, (is_up, busy) in sorted(hosts.items()):
        up.add_metric([host], is_up)
        active.add_metric([host], busy)
    yield from (up, active)


def queue_metrics(snapshot: Snapshot, online: Sequence[WorkerInfo], queues: Iterable[str]) -> Iterator[Metric]:
    length = GaugeMetricFamily("celery_queue_length", "The number of message in broker queue.",
                               labels=["queue_name"])
    for name, depth in snapshot.queues.items():
        length.add_metric([name], depth.pending)
    consumers = GaugeMetricFamily("celery_active_consumer_count", "The number of active consumer in broker queue.",
                                  labels=["queue_name"])
    workers = GaugeMetricFamily("celery_active_worker_count", "The number of active workers in broker queue.",
                                labels=["queue_name"])
    processes = GaugeMetricFamily("celery_active_process_count",
                                  "The number of active processes in broker queue.", labels=["queue_name"])
    for queue in queues:
        members = [w for w in online if queue in w.queues]
        consumers.add_metric([queue], len(members))
        workers.add_metric([queue], len(members))
        processes.add_metric([queue], sum(w.concurrency for w in members))
    yield from (length, consumers, workers, processes)


def host_totals(counters: dict[bytes, bytes]) -> dict[str, float]:
    totals: dict[str, float] = {}
    for parts, value in _fields(counters):
        if len(parts) == 5:
            totals[parts[2]] = totals.get(parts[2], 0.0) + value
    return totals


def stale_hosts(
    totals: dict[str, float], seen: dict[str, tuple[float, float]], online_hosts: set[str], now: float,
    after: float = PURGE_AFTER,
) -> tuple[set[str], dict[str, tuple[float, float]]]:
    """Hosts to purge, and the new memory of (total, unchanged since) per host. Pure."""
    memory: dict[str, tuple[float, float]] = {}
    stale = set()
    for host, total in totals.items():
        previous = seen.get(host)
        since = previous[1] if previous is not None and previous[0] == total and host not in online_hosts else now
        memory[host] = (total, since)
        if now - since >= after:
            stale.add(host)
    return stale, {h: v for h, v in memory.items() if h not in stale}


def fields_of_hosts(raw: Iterable[bytes], hosts: set[str], host_index: int) -> list[bytes]:
    out = []
    for field in raw:
        parts = field.decode(errors="replace").split(SEPARATOR)
        if len(parts) > host_index and parts[host_index] in hosts:
            out.append(field)
    return out
