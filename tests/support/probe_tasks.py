"""Tasks that exist only for tests: they record what happened to them in Redis.

Workers load this module through BOOKGEN_EXTRA_TASK_MODULES (see bookgen_worker.app), so the tasks
run on the real BookGen app with its real retry and dead-letter behaviour.
"""

from __future__ import annotations

import json
import os
import time

from bookgen_worker.app import app, bookgen_settings
from bookgen_worker.errors import TransientError
from bookgen_worker.redis_client import get_redis
from bookgen_worker.tasks.base import bookgen_task

MODULE = "tests.support.probe_tasks"
EVENTS_KEY = "probe:events"
DONE_KEY = "probe:done"


def _record(task, label: str) -> None:  # type: ignore[no-untyped-def]
    delivery = task.request.delivery_info or {}
    event = {
        "label": label,
        "task_id": task.request.id,
        "queue": delivery.get("routing_key"),
        "hostname": task.request.hostname,
        "retries": task.request.retries,
        "at": time.time(),
        "pid": os.getpid(),
    }
    get_redis(bookgen_settings(app)).rpush(EVENTS_KEY, json.dumps(event))


@bookgen_task("probe.record")
def record(self, label: str, seconds: float = 0.0) -> str:  # type: ignore[no-untyped-def]
    """Note that `label` ran (where, when), optionally taking `seconds`, then count it as done."""
    _record(self, label)
    if seconds:
        time.sleep(seconds)
    get_redis(bookgen_settings(app)).hincrby(DONE_KEY, label, 1)
    return label


@bookgen_task("probe.sleep_then_mark")
def sleep_then_mark(self, started: str, seconds: float, finished: str) -> str:  # type: ignore[no-untyped-def]
    """Append a line to `started`, sleep, touch `finished` (files: no Redis needed while it runs or ends)."""
    from pathlib import Path

    with Path(started).open("a") as f:
        f.write(f"{self.request.id}\n")
    time.sleep(seconds)
    Path(finished).touch()
    return finished


@bookgen_task("probe.always_fails")
def always_fails(self, label: str) -> None:  # type: ignore[no-untyped-def]
    _record(self, label)
    raise TransientError(f"upstream unavailable for {label}")


def events(client) -> list[dict]:  # type: ignore[no-untyped-def]
    return [json.loads(raw) for raw in client.lrange(EVENTS_KEY, 0, -1)]


def done(client) -> dict[str, int]:  # type: ignore[no-untyped-def]
    return {k.decode(): int(v) for k, v in client.hgetall(DONE_KEY).items()}
