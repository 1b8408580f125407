"""A message no worker can run is dead-lettered with a clear reason instead of vanishing."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

import redis
from bookgen_worker import deadletter
from bookgen_worker.app import bookgen_settings
from bookgen_worker.queues import CONTENT_GENERATION, DEFAULT, HIGH_PRIORITY
from celery import Celery
from kombu import Connection

from tests.support import probe_tasks
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


CORRUPT_ENVELOPES = [b"not json {{", b"42", b'{"body": "e30=", "headers": {}}', b"\xff\xfe not utf-8"]


def test_corrupt_envelopes_in_a_queue_are_dead_lettered_with_their_raw_bytes_and_the_worker_goes_on(
    celery_app: Celery, redis_client: redis.Redis, workdir: Path
) -> None:
    settings = bookgen_settings(celery_app)
    with running_worker(redis_url=celery_app.conf.broker_url, queues=[CONTENT_GENERATION, HIGH_PRIORITY],
                        name="w", workdir=workdir, concurrency=2) as worker:
        for index, raw in enumerate(CORRUPT_ENVELOPES):
            redis_client.lpush(CONTENT_GENERATION, raw)
            # A real task behind each corrupt item: it runs only if the worker went on.
            probe_tasks.record.apply_async(args=(f"after-{index}",), queue=CONTENT_GENERATION)
        wait_for(lambda: len(probe_tasks.done(redis_client)) == len(CORRUPT_ENVELOPES), timeout=60,
                 what="the tasks queued behind the corrupt items to run")
        entries = wait_for(
            lambda: [e for e in deadletter.entries(settings) if e.exception_type == "CorruptEnvelope"]
            if deadletter.size(settings) >= len(CORRUPT_ENVELOPES) else [],
            timeout=30, what="every corrupt item in the dead-letter queue",
        )
        assert worker.process.poll() is None
    assert sorted(base64.b64decode(e.extra["raw_base64"]) for e in entries) == sorted(CORRUPT_ENVELOPES)
    assert {e.queue for e in entries} == {CONTENT_GENERATION}
    by_raw = {base64.b64decode(e.extra["raw_base64"]): e for e in entries}
    assert "not JSON" in by_raw[b"not json {{"].exception_message
    assert "must be a JSON object (got int)" in by_raw[b"42"].exception_message
    assert "no 'properties'" in by_raw[b'{"body": "e30=", "headers": {}}'].exception_message
    assert by_raw[b"not json {{"].extra["raw"] == "not json {{"
    assert redis_client.hlen("unacked") == 0  # rejected for good: not delivered again later


def test_replaying_an_unknown_task_dead_letter_counts_the_replay(celery_app: Celery, workdir: Path) -> None:
    settings = bookgen_settings(celery_app)
    sent = celery_app.send_task("bookgen.no_such_task", args=[1], queue=DEFAULT)
    with running_worker(redis_url=celery_app.conf.broker_url, queues=[DEFAULT], name="w", workdir=workdir):
        first = wait_for(lambda: deadletter.get(settings, sent.id), timeout=30, what="the dead letter")
        assert first.replays == 0
        again = deadletter.replay(celery_app, settings, sent.id)
        second = wait_for(lambda: deadletter.get(settings, again), timeout=30, what="the replay's dead letter")
        assert second.replays == 1
        once_more = deadletter.replay(celery_app, settings, again)
        third = wait_for(lambda: deadletter.get(settings, once_more), timeout=30, what="the 2nd replay's dead letter")
    assert third.replays == 2
