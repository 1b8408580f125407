"""Task counters and runtimes kept in Redis, fed by Celery signals, written in batches.

Prometheus counters held in process memory are wrong under prefork: tasks run in pool children that
are recycled (`--max-tasks-per-child`), taking their counts with them, and the HTTP server lives in
the parent. So every process that sends or runs tasks adds to Redis hashes instead, and the collector
in the monitoring worker reads them on scrape. The handlers never talk to Redis themselves: they add
to the process's Batcher (batch.py), which writes about once a second and on shutdown, so a task's
hot path costs no Redis command for metrics. A failing write is logged and retried, never raised.

Two families are recorded: ours (`bookgen_tasks_*`, per task and queue) and celery-exporter's
(`celery_task_*`, per name, hostname and queue_name, with the same events and meanings as its
Celery-event-based counters, so celery-mixin works unchanged).

The same module stamps the publish time into every message (`bookgen_sent_at`), which measure()
reads from the oldest queued message to report the oldest pending age.
"""

from __future__ import annotations

import logging
import math
import socket
import threading
import time
from collections.abc import Mapping
from typing import Any

from celery import Celery, signals

from ..config import Settings
from ..queues import queue_for_task
from ..redis_client import get_redis
from .batch import BATCHER, Amount
from .keys import CELERY_COUNTERS, CELERY_RUNTIME, TASK_COUNTERS, TASK_RUNTIME, key
from .measure import SENT_AT_HEADER

logger = logging.getLogger(__name__)

#: Runtime histogram buckets (seconds): from quick validations to hour-long generations.
RUNTIME_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, math.inf)
#: celery-exporter's runtime buckets: prometheus_client's defaults (it passes none of its own).
CELERY_RUNTIME_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, math.inf)

KINDS = ("sent", "succeeded", "failed", "retried", "dead_lettered")
CELERY_KINDS = ("sent", "received", "started", "succeeded", "failed", "rejected", "revoked", "retried")
SEPARATOR = "|"

_started: dict[str, float] = {}
_started_lock = threading.Lock()
#: (name, hostname, queue) whose celery_* counters this process has already created at 0.
_initialised: set[tuple[str, str, str]] = set()


def bucket_label(le: float) -> str:
    return "+Inf" if math.isinf(le) else repr(float(le))


def bucket_for(seconds: float, buckets: tuple[float, ...] = RUNTIME_BUCKETS) -> str:
    for le in buckets:
        if seconds <= le:
            return bucket_label(le)
    return "+Inf"


def host_of(nodename: str | None) -> str:
    """celery-exporter's `hostname` label: the host part of a node name (`pool@host` -> `host`)."""
    name = str(nodename or "") or socket.gethostname()
    return name.split("@", 1)[-1]


def _add(settings: Settings, name: str, field: str, amount: Amount = 1) -> None:
    BATCHER.add(settings.redis_url, lambda: get_redis(settings), key(settings, name), field, amount)


def count_task(settings: Settings, kind: str, task: str, queue: str) -> None:
    _add(settings, TASK_COUNTERS, SEPARATOR.join((kind, task, queue)))


def count_dead_letter(settings: Settings, task: str, queue: str) -> None:
    count_task(settings, "dead_lettered", task or "unknown", queue or "default")


def observe_runtime(settings: Settings, task: str, queue: str, seconds: float) -> None:
    base = f"{task}{SEPARATOR}{queue}{SEPARATOR}"
    _add(settings, TASK_RUNTIME, base + bucket_for(seconds))
    _add(settings, TASK_RUNTIME, base + "count")
    _add(settings, TASK_RUNTIME, base + "sum", float(seconds))


def celery_field(kind: str, name: str, hostname: str, queue: str, exception: str = "") -> str:
    return SEPARATOR.join((kind, name, hostname, queue, exception))


def count_celery(settings: Settings, kind: str, name: str, hostname: str, queue: str, exception: str = "") -> None:
    """One celery-exporter event. Like celery-exporter, the first worker-side event of a label set
    creates every other counter of that set at 0, so panels and ratios have series before a failure."""
    _add(settings, CELERY_COUNTERS, celery_field(kind, name, hostname, queue, exception))
    labels = (name, hostname, queue)
    if kind != "sent" and labels not in _initialised:
        _initialised.add(labels)
        for other in CELERY_KINDS:
            _add(settings, CELERY_COUNTERS, celery_field(other, name, hostname, queue), 0)


def observe_celery_runtime(settings: Settings, name: str, hostname: str, queue: str, seconds: float) -> None:
    base = SEPARATOR.join((name, hostname, queue)) + SEPARATOR
    _add(settings, CELERY_RUNTIME, base + bucket_for(seconds, CELERY_RUNTIME_BUCKETS))
    _add(settings, CELERY_RUNTIME, base + "count")
    _add(settings, CELERY_RUNTIME, base + "sum", float(seconds))


def flush() -> bool:
    """Write this process's buffered metrics now (tests, shutdown hooks)."""
    return BATCHER.flush()


def _queue_of(task: Any) -> str:
    delivery: Mapping[str, Any] = getattr(task.request, "delivery_info", None) or {}
    return str(delivery.get("routing_key") or queue_for_task(task.name))


def _request_queue(request: Any, name: str) -> str:
    delivery: Mapping[str, Any] = getattr(request, "delivery_info", None) or {}
    return str(delivery.get("routing_key") or queue_for_task(name))


def _message_labels(message: Any) -> tuple[str, str]:
    """(task name, queue) of a raw kombu message a worker refused; '' when it has no task header."""
    headers: Mapping[str, Any] = getattr(message, "headers", None) or {}
    delivery: Mapping[str, Any] = getattr(message, "delivery_info", None) or {}
    name = str(headers.get("task") or "")
    return name, str(delivery.get("routing_key") or (queue_for_task(name) if name else "default"))


def connect(app: Celery) -> None:
    """Connect the handlers for `app` (idempotent: dispatch_uid keeps one copy per signal)."""

    def settings() -> Settings:
        return app.bookgen_settings  # type: ignore[attr-defined,no-any-return]

    def stamp_sent_at(headers: dict[str, Any] | None = None, **_: Any) -> None:
        # Always overwrite: a retry or replay carries the old headers, but it starts waiting now.
        if headers is not None:
            headers[SENT_AT_HEADER] = time.time()

    def on_sent(sender: str | None = None, routing_key: str | None = None, **_: Any) -> None:
        name = str(sender)
        queue = routing_key or queue_for_task(name)
        count_task(settings(), "sent", name, queue)
        count_celery(settings(), "sent", name, host_of(None), queue)

    def on_received(sender: Any = None, request: Any = None, **_: Any) -> None:
        if request is not None:
            name = str(request.name)
            count_celery(settings(), "received", name, host_of(getattr(sender, "hostname", None)),
                         _request_queue(request, name))

    def on_prerun(sender: Any = None, task_id: str | None = None, **_: Any) -> None:
        if task_id:
            with _started_lock:
                _started[task_id] = time.monotonic()
        if sender is not None:
            count_celery(settings(), "started", sender.name, host_of(sender.request.hostname), _queue_of(sender))

    def on_postrun(sender: Any = None, task_id: str | None = None, **_: Any) -> None:
        with _started_lock:
            started = _started.pop(task_id or "", None)
        if started is not None and sender is not None:
            observe_runtime(settings(), sender.name, _queue_of(sender), time.monotonic() - started)

    def on_success(sender: Any = None, **_: Any) -> None:
        if sender is None:
            return
        queue, host = _queue_of(sender), host_of(sender.request.hostname)
        count_task(settings(), "succeeded", sender.name, queue)
        count_celery(settings(), "succeeded", sender.name, host, queue)
        with _started_lock:
            started = _started.get(sender.request.id or "")
        if started is not None:  # celery-exporter observes the runtime of successes only
            observe_celery_runtime(settings(), sender.name, host, queue, time.monotonic() - started)

    def on_failure(sender: Any = None, exception: BaseException | None = None, **_: Any) -> None:
        if sender is None:
            return
        queue = _queue_of(sender)
        count_task(settings(), "failed", sender.name, queue)
        exc_name = type(exception).__name__ if exception is not None else "UnknownException"
        count_celery(settings(), "failed", sender.name, host_of(sender.request.hostname), queue, exc_name)

    def on_retry(sender: Any = None, request: Any = None, **_: Any) -> None:
        if sender is None:
            return
        queue = _queue_of(sender)
        count_task(settings(), "retried", sender.name, queue)
        count_celery(settings(), "retried", sender.name, host_of(sender.request.hostname), queue)

    def on_revoked(sender: Any = None, request: Any = None, **_: Any) -> None:
        name = str(getattr(sender, "name", None) or getattr(request, "task", "") or "")
        if name:
            count_celery(settings(), "revoked", name, host_of(getattr(request, "hostname", None)),
                         _request_queue(request, name))

    def on_rejected(sender: Any = None, message: Any = None, **_: Any) -> None:
        # The worker refused the message (unknown task, malformed body): our app dead-letters it.
        name, queue = _message_labels(message)
        count_celery(settings(), "rejected", name or "unknown", host_of(getattr(sender, "hostname", None)), queue)

    def on_unknown(sender: Any = None, message: Any = None, name: str | None = None, **_: Any) -> None:
        task, queue = _message_labels(message)
        count_celery(settings(), "rejected", str(name or task or "unknown"),
                     host_of(getattr(sender, "hostname", None)), queue)

    def on_process_shutdown(**_: Any) -> None:
        flush()  # a pool child exits (warm shutdown or recycling): its last batch must not be lost

    uid = "bookgen-"
    signals.before_task_publish.connect(stamp_sent_at, weak=False, dispatch_uid=uid + "sent-at")
    signals.after_task_publish.connect(on_sent, weak=False, dispatch_uid=uid + "count-sent")
    signals.task_received.connect(on_received, weak=False, dispatch_uid=uid + "count-received")
    signals.task_prerun.connect(on_prerun, weak=False, dispatch_uid=uid + "runtime-start")
    signals.task_postrun.connect(on_postrun, weak=False, dispatch_uid=uid + "runtime-end")
    signals.task_success.connect(on_success, weak=False, dispatch_uid=uid + "count-succeeded")
    signals.task_failure.connect(on_failure, weak=False, dispatch_uid=uid + "count-failed")
    signals.task_retry.connect(on_retry, weak=False, dispatch_uid=uid + "count-retried")
    signals.task_revoked.connect(on_revoked, weak=False, dispatch_uid=uid + "count-revoked")
    signals.task_rejected.connect(on_rejected, weak=False, dispatch_uid=uid + "count-rejected")
    signals.task_unknown.connect(on_unknown, weak=False, dispatch_uid=uid + "count-unknown")
    signals.worker_process_shutdown.connect(on_process_shutdown, weak=False, dispatch_uid=uid + "flush-child")
    signals.worker_shutdown.connect(on_process_shutdown, weak=False, dispatch_uid=uid + "flush-main")
