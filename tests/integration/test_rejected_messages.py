"""A message no worker can run is dead-lettered with a clear reason instead of vanishing."""

from __future__ import annotations

import uuid
from pathlib import Path

from bookgen_worker import deadletter
from bookgen_worker.app import bookgen_settings
from bookgen_worker.queues import DEFAULT
from celery import Celery
from kombu import Connection

from tests.support.waiting import wait_for
from tests.support.workers import running_worker


def test_an_unknown_task_name_is_dead_lettered(celery_app: Celery, workdir: Path) -> None:
    settings = bookgen_settings(celery_app)
    sent = celery_app.send_task("bookgen.no_such_task", args=[1, 2], queue=DEFAULT)
    with running_worker(redis_url=celery_app.conf.broker_url, queues=[DEFAULT], name="w", workdir=workdir):
        entry = wait_for(lambda: deadletter.get(settings, sent.id), timeout=30, what="the dead letter")
    assert entry.task_name == "bookgen.no_such_task"
    assert list(entry.args) == [1, 2]
    assert entry.queue == DEFAULT
    assert "no task named 'bookgen.no_such_task' is registered" in entry.exception_message


def test_a_malformed_payload_is_dead_lettered(celery_app: Celery, workdir: Path) -> None:
    settings = bookgen_settings(celery_app)
    task_id = str(uuid.uuid4())
    # A connection of its own: pooled ones remember declarations that the per-test flush removed.
    with Connection(celery_app.conf.broker_url, transport_options=celery_app.conf.broker_transport_options) as conn:
        conn.Producer().publish(
            {"not": "a celery body"},
            exchange=DEFAULT, routing_key=DEFAULT, serializer="json",
            declare=[celery_app.amqp.queues[DEFAULT]],
            headers={"lang": "py", "task": "bookgen.probe.record", "id": task_id, "root_id": task_id,
                     "parent_id": None, "group": None, "argsrepr": "", "kwargsrepr": "", "origin": "test"},
        )
    with running_worker(redis_url=celery_app.conf.broker_url, queues=[DEFAULT], name="w", workdir=workdir):
        entry = wait_for(lambda: deadletter.get(settings, task_id), timeout=30, what="the dead letter")
    assert entry.task_name == "bookgen.probe.record"
    assert entry.exception_message  # says what was wrong, in words
    assert entry.kwargs == {"payload": {"not": "a celery body"}}
