"""The operator's own Prometheus metrics: reconcile counts, errors, durations and writes.

Served by `start_server(port)` (prometheus_client's HTTP server) from the operator's start-up;
liveness is kopf's own endpoint (`--liveness`). The metric objects are module constants because
prometheus_client registers them in its one process-wide registry; what the operator counts per queue
in memory ("how often was this queue reconciled") is in its OperatorContext (`reconciles`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from wsgiref.simple_server import WSGIServer

from prometheus_client import Counter, Gauge, Histogram, start_http_server

RECONCILE_TOTAL = Counter(
    "bookgen_operator_reconciles_total", "Reconciles of BookGenQueues by trigger and result.", ["trigger", "result"]
)
RECONCILE_ERRORS = Counter(
    "bookgen_operator_reconcile_errors_total", "Reconciles that ended in an error, by reason.", ["reason"]
)
RECONCILE_SECONDS = Histogram(
    "bookgen_operator_reconcile_duration_seconds", "Duration of one reconcile.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
WRITES_TOTAL = Counter(
    "bookgen_operator_writes_total", "Writes of children and status by verb and kind.", ["verb", "kind"]
)

# Per pool of a BookGenQueue: what the autoscaler wants and what the platform has (the dashboard's
# "desired vs actual replicas"). `queue_namespace`/`queue_service` name the queue as its own metrics are
# labelled (`namespace`, `service`), without clashing with the operator pod's target labels.
POOL_LABELS = ("queue_namespace", "queue_service", "pool")
POOL_DESIRED = Gauge("bookgen_operator_pool_desired_replicas", "Replicas the autoscaler wants for the pool.",
                     POOL_LABELS)
POOL_CURRENT = Gauge("bookgen_operator_pool_current_replicas", "Replicas the pool's Deployment has.", POOL_LABELS)

@contextmanager
def reconcile_timer(trigger: str) -> Iterator[dict[str, str]]:
    """Count and time one reconcile; the body sets outcome["result"] (ok, invalid, waiting, error)."""
    outcome = {"result": "error"}
    started = time.perf_counter()
    try:
        yield outcome
    finally:
        RECONCILE_SECONDS.observe(time.perf_counter() - started)
        RECONCILE_TOTAL.labels(trigger=trigger, result=outcome["result"]).inc()


def count_write(verb: str, kind: str) -> None:
    WRITES_TOTAL.labels(verb=verb, kind=kind).inc()


def record_pool(namespace: str, service: str, pool: str, desired: int, current: int) -> None:
    POOL_DESIRED.labels(namespace, service, pool).set(desired)
    POOL_CURRENT.labels(namespace, service, pool).set(current)


def pool_gauges(namespace: str, service: str) -> Callable[[str, int, int], None]:
    """record_pool for one queue, its label children looked up once per pool (not twice per poll)."""
    children: dict[str, tuple[Gauge, Gauge]] = {}

    def record(pool: str, desired: int, current: int) -> None:
        pair = children.get(pool)
        if pair is None:
            pair = children[pool] = (POOL_DESIRED.labels(namespace, service, pool),
                                     POOL_CURRENT.labels(namespace, service, pool))
        pair[0].set(desired)
        pair[1].set(current)

    return record


def count_error(reason: str) -> None:
    RECONCILE_ERRORS.labels(reason=reason).inc()


def start_server(port: int, addr: str = "0.0.0.0") -> tuple[WSGIServer, threading.Thread]:
    """Serve /metrics in a background thread; returns prometheus_client's (server, thread). All interfaces
    by default: Prometheus scrapes the pod from inside the cluster."""
    return start_http_server(port, addr=addr)
