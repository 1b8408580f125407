"""Task counters and runtimes kept in Redis, fed by Celery signals, written in batches.

Prometheus counters held in process memory are wrong under prefork: tasks run in pool children that
are recycled (`--max-tasks-per-child`), taking their counts with them, and the HTTP server lives in
the parent. So every process that sends or runs tasks adds to Redis hashes instead, and the collector
in the monitoring worker reads them on scrape. The handlers never talk to Redis themselves: they add
to the process's Batcher (batch.py), which writes about once a second and on shutdown, so a task's
hot path costs no Redis command for metrics. A failing write is logged and retried, never raised.

A task's own events (sent, received, started, succeeded, its runtimes) are its hot path: their keys,
fields and labels are built once per label set (`Slots`, per task name, raw hostname and routing
key) and each event only records its prebuilt slot; rarer events (failures, retries, rejects) build
their fields each time.

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
import time
from collections.abc import Mapping
from typing import Any

from celery import Celery, signals

from ..config import Settings
from ..queues import queue_for_task
from ..redis_client import get_redis
from .batch import BATCHER, Amount, Histogram, Slot
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

#: task id -> monotonic start. No lock: single dict operations are atomic under the GIL.
_started: dict[str, float] = {}
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
    if kind != "sent":
        _initialise(settings, name, hostname, queue)


def _initialise(settings: Settings, name: str, hostname: str, queue: str) -> None:
    """Create every celery_* counter of a label set at 0, once per process."""
    labels = (name, hostname, queue)
    if labels not in _initialised:
        _initialised.add(labels)
        for other in CELERY_KINDS:
            _add(settings, CELERY_COUNTERS, celery_field(other, name, hostname, queue), 0)


def observe_celery_runtime(settings: Settings, name: str, hostname: str, queue: str, seconds: float) -> None:
    base = SEPARATOR.join((name, hostname, queue)) + SEPARATOR
    _add(settings, CELERY_RUNTIME, base + bucket_for(seconds, CELERY_RUNTIME_BUCKETS))
    _add(settings, CELERY_RUNTIME, base + "count")
    _add(settings, CELERY_RUNTIME, base + "sum", float(seconds))


def _histogram(settings: Settings, name: str, base: str, buckets: tuple[float, ...]) -> Histogram:
    return Histogram(key(settings, name), base, buckets, tuple(bucket_for(le, buckets) for le in buckets))


class Slots:
    """The prebuilt slots of one label set (task name, hostname, queue) on the worker's side."""

    def __init__(self, settings: Settings, name: str, hostname: str, queue: str) -> None:
        url, client = settings.redis_url, (lambda: get_redis(settings))
        tasks, celery = key(settings, TASK_COUNTERS), key(settings, CELERY_COUNTERS)

        def slot(*increments: tuple[str, str, Amount], histogram: Histogram | None = None) -> Slot:
            return Slot(url, client, increments, histogram)

        labels = SEPARATOR.join((name, hostname, queue)) + SEPARATOR
        self.received = slot((celery, celery_field("received", name, hostname, queue), 1))
        self.started = slot((celery, celery_field("started", name, hostname, queue), 1))
        # celery-exporter observes the runtime of successes only: recorded with a value when it is known
        self.succeeded = slot((tasks, SEPARATOR.join(("succeeded", name, queue)), 1),
                              (celery, celery_field("succeeded", name, hostname, queue), 1),
                              histogram=_histogram(settings, CELERY_RUNTIME, labels, CELERY_RUNTIME_BUCKETS))
        self.runtime = slot(histogram=_histogram(settings, TASK_RUNTIME, f"{name}{SEPARATOR}{queue}{SEPARATOR}",
                                                 RUNTIME_BUCKETS))
        self.sent = slot((tasks, SEPARATOR.join(("sent", name, queue)), 1),
                         (celery, celery_field("sent", name, hostname, queue), 1))


class SlotCache:
    """Slots per (name, raw hostname, raw routing key) for one Settings object (a new one starts afresh)."""

    def __init__(self) -> None:
        self._settings: Settings | None = None
        self._slots: dict[tuple[str, str | None, str | None], Slots] = {}

    def get(self, settings: Settings, name: str, hostname: str | None, routing_key: str | None,
            worker_side: bool = True) -> Slots:
        if settings is not self._settings:
            self._settings, self._slots = settings, {}
        slots = self._slots.get((name, hostname, routing_key))
        if slots is None:
            host, queue = host_of(hostname), str(routing_key or queue_for_task(name))
            if worker_side:  # like count_celery: a set's first worker-side event creates its counters at 0
                _initialise(settings, name, host, queue)
            slots = self._slots[(name, hostname, routing_key)] = Slots(settings, name, host, queue)
        return slots


#: Worker-side slots (keyed by the request's hostname) and sender-side ones (keyed by None: this host).
WORKER_SLOTS, SENT_SLOTS = SlotCache(), SlotCache()


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
        return app.bookgen_settings  # type: ignore[no-any-return]

    def stamp_sent_at(headers: dict[str, Any] | None = None, **_: Any) -> None:
        # Always overwrite: a retry or replay carries the old headers, but it starts waiting now.
        if headers is not None:
            headers[SENT_AT_HEADER] = time.time()

    record, started_at, now = BATCHER.record, _started, time.monotonic

    def on_sent(sender: str | None = None, routing_key: str | None = None, **_: Any) -> None:
        record(SENT_SLOTS.get(settings(), str(sender), None, routing_key, worker_side=False).sent)

    def on_received(sender: Any = None, request: Any = None, **_: Any) -> None:
        if request is not None:
            delivery = getattr(request, "delivery_info", None) or {}
            record(WORKER_SLOTS.get(settings(), str(request.name), getattr(sender, "hostname", None),
                                    delivery.get("routing_key")).received)

    def task_slots(sender: Any, request: Any) -> Slots:
        delivery = request.delivery_info or {}
        return WORKER_SLOTS.get(settings(), sender.name, request.hostname, delivery.get("routing_key"))

    def on_prerun(sender: Any = None, task_id: str | None = None, **_: Any) -> None:
        if task_id:
            started_at[task_id] = now()
        if sender is not None:
            record(task_slots(sender, sender.request).started)

    def on_postrun(sender: Any = None, task_id: str | None = None, **_: Any) -> None:
        started = started_at.pop(task_id or "", None)
        if started is not None and sender is not None:
            record(task_slots(sender, sender.request).runtime, now() - started)

    def on_success(sender: Any = None, **_: Any) -> None:
        if sender is None:
            return
        request = sender.request
        started = started_at.get(request.id or "")
        record(task_slots(sender, request).succeeded, None if started is None else now() - started)

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
