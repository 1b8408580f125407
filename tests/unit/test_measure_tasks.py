"""The monitoring tasks, run in-process against a real redis-server."""

from __future__ import annotations

import json
import time

import redis
from bookgen_worker import deadletter
from bookgen_worker.app import bookgen_settings
from bookgen_worker.metrics.workers import WorkerInfo, publish
from bookgen_worker.tasks import monitoring
from celery import Celery


def _dead(task_id: str, name: str, exc: str, failed_at: float) -> deadletter.DeadLetter:
    return deadletter.DeadLetter(task_id, name, [], {}, "export", 4, exc, "boom", "tb", 4, failed_at, failed_at)


def test_dead_letters_are_summarised_and_old_ones_archived(celery_app: Celery, redis_client: redis.Redis) -> None:
    settings = bookgen_settings(celery_app)
    now = time.time()
    for entry in (
        _dead("old-1", "bookgen.export_to_pdf", "OSError", now - 90_000),
        _dead("new-1", "bookgen.export_to_pdf", "TransientError", now - 10),
        _dead("new-2", "bookgen.generate_chapter", "TransientError", now - 5),
    ):
        deadletter.record(settings, entry)

    result = monitoring.process_dead_letter_queue.apply(kwargs={"archive_older_than": 86400}).get()

    assert result == {
        "total": 3,
        "by_task": {"bookgen.export_to_pdf": 2, "bookgen.generate_chapter": 1},
        "by_exception": {"OSError": 1, "TransientError": 2},
        "archived": 1,
    }
    assert sorted(e.task_id for e in deadletter.entries(settings)) == ["new-1", "new-2"]
    assert [e.task_id for e in deadletter.entries(settings, archive=True)] == ["old-1"]
    stored = json.loads(redis_client.get("bookgen:metrics:dead_letters"))
    assert stored["archived"] == 1


def test_a_negative_archive_threshold_fails_without_retrying(celery_app: Celery) -> None:
    outcome = monitoring.process_dead_letter_queue.apply(kwargs={"archive_older_than": -1})
    assert outcome.failed() and "archive_older_than" in str(outcome.result)


def test_cleanup_removes_only_expired_results_without_a_ttl(celery_app: Celery, redis_client: redis.Redis) -> None:
    settings = bookgen_settings(celery_app)
    old = "2000-01-01T00:00:00+00:00"
    recent = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    redis_client.set("celery-task-meta-old", json.dumps({"status": "SUCCESS", "date_done": old}))
    redis_client.set("celery-task-meta-recent", json.dumps({"status": "SUCCESS", "date_done": recent}))
    redis_client.set("celery-task-meta-ttl", json.dumps({"status": "SUCCESS", "date_done": old}), ex=600)
    redis_client.set("celery-task-meta-junk", "not json")
    redis_client.set("unrelated-old", json.dumps({"date_done": old}))
    assert settings.result_expires < time.time() - 946684800

    assert monitoring.cleanup_expired_results.apply().get() == {"removed": 1}
    assert sorted(k.decode() for k in redis_client.keys("*") if not k.startswith(b"bookgen:")) == [
        "celery-task-meta-junk", "celery-task-meta-recent", "celery-task-meta-ttl", "unrelated-old",
    ]


def test_queue_worker_and_health_stats_are_stored_for_the_endpoint_and_cli(
    celery_app: Celery, redis_client: redis.Redis
) -> None:
    settings = bookgen_settings(celery_app)
    celery_app.send_task("bookgen.probe.record", args=["x"], queue="export", routing_key="export")
    publish(redis_client, settings, WorkerInfo("export@h", "export", "pod", 1, ("export",), 2, 1, time.time()))

    stats = monitoring.get_queue_stats.apply().get()
    workers = monitoring.get_worker_stats.apply().get()
    health = monitoring.health_check.apply().get()

    assert stats["queues"]["export"]["pending"] == 1
    assert json.loads(redis_client.get("bookgen:metrics:snapshot")) == stats
    assert workers["pools"] == {"export": {"online": 1, "busy": 1, "slots": 2}}
    assert health["status"] == "ok" and health["redis"] is True and health["workers_online"] == 1
