"""Task counters and runtimes kept in Redis, fed by Celery signals.

Prometheus counters held in process memory are wrong under prefork: tasks run in pool children that
are recycled (`--max-tasks-per-child`), taking their counts with them, and the HTTP server lives in
the parent. So every process that sends or runs tasks adds to Redis hashes instead, and the collector
in the monitoring worker reads them on scrape. A failing Redis write is logged, never raised: metrics
must not fail a task.

The same module stamps the publish time into every message (`bookgen_sent_at`), which measure()
reads from the oldest queued message to report the oldest pending age.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Mapping
from typing import Any

from celery import Celery, signals

from ..config import Settings
from ..queues import queue_for_task
from ..redis_client import get_redis
from .keys import TASK_COUNTERS, TASK_RUNTIME, key
from .measure import SENT_AT_HEADER

logger = logging.getLogger(__name__)

#: Runtime histogram buckets (seconds): from quick validations to hour-long generations.
RUNTIME_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, math.inf)

KINDS = ("sent", "succeeded", "failed", "retried")
SEPARATOR = "|"

_started: dict[str, float] = {}
_started_lock = threading.Lock()


def bucket_label(le: float) -> str:
    return "+Inf" if math.isinf(le) else repr(float(le))


def bucket_for(seconds: float) -> str:
    for le in RUNTIME_BUCKETS:
        if seconds <= le:
            return bucket_label(le)
    return "+Inf"


def count_task(settings: Settings, kind: str, task: str, queue: str) -> None:
    _safely(lambda: get_redis(settings).hincrby(key(settings, TASK_COUNTERS), SEPARATOR.join((kind, task, queue)), 1))


def observe_runtime(settings: Settings, task: str, queue: str, seconds: float) -> None:
    base = f"{task}{SEPARATOR}{queue}{SEPARATOR}"

    def write() -> None:
        with get_redis(settings).pipeline(transaction=True) as pipe:
            name = key(settings, TASK_RUNTIME)
            pipe.hincrby(name, base + bucket_for(seconds), 1)
            pipe.hincrby(name, base + "count", 1)
            pipe.hincrbyfloat(name, base + "sum", seconds)
            pipe.execute()

    _safely(write)


def _safely(action: Any) -> None:
    try:
        action()
    except Exception as exc:  # a metrics write must never fail a task or a send
        logger.warning("could not record task metrics in Redis: %s", exc)


def _queue_of(task: Any) -> str:
    delivery: Mapping[str, Any] = getattr(task.request, "delivery_info", None) or {}
    return str(delivery.get("routing_key") or queue_for_task(task.name))


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
        count_task(settings(), "sent", name, routing_key or queue_for_task(name))

    def on_prerun(task_id: str | None = None, **_: Any) -> None:
        if task_id:
            with _started_lock:
                _started[task_id] = time.monotonic()

    def on_postrun(sender: Any = None, task_id: str | None = None, **_: Any) -> None:
        with _started_lock:
            started = _started.pop(task_id or "", None)
        if started is not None and sender is not None:
            observe_runtime(settings(), sender.name, _queue_of(sender), time.monotonic() - started)

    def counter(kind: str) -> Any:
        def handler(sender: Any = None, **_: Any) -> None:
            if sender is not None:
                count_task(settings(), kind, sender.name, _queue_of(sender))

        return handler

    signals.before_task_publish.connect(stamp_sent_at, weak=False, dispatch_uid="bookgen-sent-at")
    signals.after_task_publish.connect(on_sent, weak=False, dispatch_uid="bookgen-count-sent")
    signals.task_prerun.connect(on_prerun, weak=False, dispatch_uid="bookgen-runtime-start")
    signals.task_postrun.connect(on_postrun, weak=False, dispatch_uid="bookgen-runtime-end")
    signals.task_success.connect(counter("succeeded"), weak=False, dispatch_uid="bookgen-count-succeeded")
    signals.task_failure.connect(counter("failed"), weak=False, dispatch_uid="bookgen-count-failed")
    signals.task_retry.connect(counter("retried"), weak=False, dispatch_uid="bookgen-count-retried")
