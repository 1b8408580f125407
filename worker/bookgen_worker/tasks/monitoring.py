"""Monitoring tasks (queue `monitoring`), run on the beat schedule of bookgen_worker.beat.

Each stores its latest result in Redis (bookgen:metrics:*), so `bookgen status` and the metrics
endpoint can show it without asking a worker. The measurements themselves come from
metrics.measure() — the same function the exporter and the autoscaler use.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import asdict
from typing import Any

from .. import deadletter
from ..app import bookgen_settings
from ..config import Settings
from ..errors import InvalidInput
from ..metrics.keys import DEAD_LETTER_SUMMARY, HEALTH, SNAPSHOT, WORKER_STATS, key
from ..metrics.measure import measure
from ..metrics.workers import read_workers
from ..redis_client import get_redis, prefixed
from .base import bookgen_task

RESULT_KEY_PATTERN = "celery-task-meta-*"


def _store(settings: Settings, name: str, value: dict[str, Any]) -> None:
    get_redis(settings).set(key(settings, name), json.dumps(value))


@bookgen_task("health_check")
def health_check(self) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Redis reachable and fast, workers online, dead letters counted."""
    settings = bookgen_settings(self.app)
    client = get_redis(settings)
    started = time.monotonic()
    client.ping()
    latency = time.monotonic() - started
    workers = read_workers(client, settings)
    dead = deadletter.size(settings)
    result = {
        "status": "ok" if workers else "degraded",
        "redis": True,
        "redis_latency_seconds": round(latency, 6),
        "workers_online": len(workers),
        "dead_letters": dead,
        "checked_at": time.time(),
    }
    _store(settings, HEALTH, result)
    return result


@bookgen_task("get_queue_stats")
def get_queue_stats(self) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Per queue pending, in flight and oldest pending age (one pipelined round trip)."""
    settings = bookgen_settings(self.app)
    snapshot = measure(get_redis(settings), settings).to_dict()
    _store(settings, SNAPSHOT, snapshot)
    return snapshot


@bookgen_task("get_worker_stats")
def get_worker_stats(self) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    settings = bookgen_settings(self.app)
    workers = read_workers(get_redis(settings), settings)
    pools: dict[str, dict[str, int]] = {}
    for worker in workers:
        pool = pools.setdefault(worker.pool, {"online": 0, "busy": 0, "slots": 0})
        pool["online"] += 1
        pool["busy"] += worker.busy
        pool["slots"] += worker.concurrency
    result = {
        "workers": [{**asdict(w), "queues": list(w.queues)} for w in workers],
        "pools": pools,
        "collected_at": time.time(),
    }
    _store(settings, WORKER_STATS, result)
    return result


@bookgen_task("cleanup_expired_results")
def cleanup_expired_results(self) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Delete task results older than result_expires that carry no TTL.

    Results written by Celery get a Redis TTL, which removes most; this catches the rest (written
    with result_expires=None, or by an older deployment), judged by their `date_done`.
    """
    settings = bookgen_settings(self.app)
    return {"removed": remove_expired_results(settings, time.time())}


def remove_expired_results(settings: Settings, now: float) -> int:
    from datetime import datetime

    client = get_redis(settings)
    removed = 0
    cutoff = now - settings.result_expires
    keys = list(client.scan_iter(match=prefixed(settings, RESULT_KEY_PATTERN), count=1000))
    for start in range(0, len(keys), 500):
        batch = keys[start : start + 500]
        with client.pipeline(transaction=False) as pipe:
            for name in batch:
                pipe.ttl(name)
                pipe.get(name)
            replies = pipe.execute()
        expired = []
        for name, ttl, raw in zip(batch, replies[0::2], replies[1::2], strict=True):
            if ttl != -1 or raw is None:
                continue  # Redis expires it by itself, or it is already gone
            try:
                done = json.loads(raw).get("date_done")
                finished = datetime.fromisoformat(done).timestamp() if done else None
            except (ValueError, TypeError, AttributeError):
                finished = None
            if finished is not None and finished < cutoff:
                expired.append(name)
        if expired:
            removed += int(client.delete(*expired))
    return removed


@bookgen_task("process_dead_letter_queue")
def process_dead_letter_queue(self, archive_older_than: object = 86400) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Summarise dead letters by task and exception; archive those older than the threshold."""
    if isinstance(archive_older_than, bool) or not isinstance(archive_older_than, int | float) \
            or archive_older_than < 0:
        raise InvalidInput(f"archive_older_than must be a number of seconds >= 0 (got {archive_older_than!r})")
    settings = bookgen_settings(self.app)
    entries = deadletter.entries(settings)
    cutoff = time.time() - float(archive_older_than)
    old = [entry.task_id for entry in entries if entry.failed_at < cutoff]
    archived = deadletter.archive(settings, old) if old else 0
    result = {
        "total": len(entries),
        "by_task": dict(Counter(entry.task_name for entry in entries)),
        "by_exception": dict(Counter(entry.exception_type for entry in entries)),
        "archived": archived,
    }
    _store(settings, DEAD_LETTER_SUMMARY, {**result, "processed_at": time.time()})
    return result
