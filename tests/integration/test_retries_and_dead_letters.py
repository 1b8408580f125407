"""Retries with growing delays, the dead-letter queue, and replay: real Redis, real workers."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest
import redis
from bookgen_operator.cli import main as bookgen
from bookgen_worker import deadletter
from bookgen_worker.app import bookgen_settings
from bookgen_worker.queues import DEFAULT, transport_priority
from celery import Celery

from tests.support import probe_tasks
from tests.support.waiting import wait_for
from tests.support.workers import FAST_TEST_ENV, running_worker

BASE = float(FAST_TEST_ENV["BOOKGEN_RETRY_BACKOFF_BASE"])


@pytest.fixture(autouse=True)
def _cli_reaches_the_test_redis(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> None:
    """main() reads the system to talk to from the environment, as a shell would give it."""
    monkeypatch.setenv("REDIS_URL", redis_url)


def attempts_of(client: redis.Redis, label: str) -> list[dict]:
    return [event for event in probe_tasks.events(client) if event["label"] == label]


def test_a_task_failing_transiently_is_retried_3_times_then_dead_lettered_and_can_be_replayed(
    celery_app: Celery, redis_client: redis.Redis, workdir: Path, capsys
) -> None:
    settings = bookgen_settings(celery_app)
    sent = probe_tasks.always_fails.submit("flaky", priority=8)

    with running_worker(redis_url=celery_app.conf.broker_url, queues=[DEFAULT], name="w", workdir=workdir):
        wait_for(lambda: deadletter.get(settings, sent.id) is not None, timeout=60, what="the dead letter")

        attempts = attempts_of(redis_client, "flaky")
        assert [a["retries"] for a in attempts] == [0, 1, 2, 3]  # the first run and exactly 3 retries
        delays = [later["at"] - earlier["at"] for earlier, later in pairwise(attempts)]
        expected = [BASE, BASE * 2, BASE * 4]  # no jitter in tests: base * 2**n
        assert all(delay >= floor * 0.95 for delay, floor in zip(delays, expected, strict=True)), delays
        assert delays[0] < delays[1] < delays[2], delays

        entry = deadletter.get(settings, sent.id)
        assert entry is not None
        assert entry.task_name == "bookgen.probe.always_fails"
        assert list(entry.args) == ["flaky"]
        assert entry.queue == DEFAULT
        assert entry.transport_priority == transport_priority(8)
        assert entry.exception_type == "TransientError"
        assert "upstream unavailable for flaky" in entry.exception_message
        assert "TransientError" in entry.traceback
        assert entry.attempts == 4
        # first_seen is stamped when the first attempt failed: after it started, before the first retry ran.
        assert attempts[0]["at"] <= entry.first_seen <= attempts[1]["at"] <= entry.failed_at

        assert bookgen(["dlq", "replay", sent.id]) == 0
        replayed_id = capsys.readouterr().out.split()[-1]
        wait_for(lambda: len(attempts_of(redis_client, "flaky")) > 4, timeout=30, what="the replay to run")
        replayed = attempts_of(redis_client, "flaky")[4]
        assert replayed["task_id"] == replayed_id
        assert replayed["queue"] == DEFAULT
        wait_for(lambda: deadletter.get(settings, replayed_id) is not None, timeout=60, what="the 2nd dead letter")
        second = deadletter.get(settings, replayed_id)
        assert second is not None and second.replays == 1
        assert second.transport_priority == transport_priority(8)


def test_bad_input_is_not_retried(celery_app: Celery, redis_client: redis.Redis, workdir: Path) -> None:
    settings = bookgen_settings(celery_app)
    sent = probe_tasks.record.apply_async(args=("x",), kwargs={"no_such_argument": 1})
    with running_worker(redis_url=celery_app.conf.broker_url, queues=[DEFAULT], name="w", workdir=workdir):
        wait_for(lambda: deadletter.get(settings, sent.id) is not None, timeout=30, what="the dead letter")
    entry = deadletter.get(settings, sent.id)
    assert entry is not None
    assert entry.exception_type == "InvalidInput"
    assert "no_such_argument" in entry.exception_message
    assert entry.attempts == 1
    assert probe_tasks.events(redis_client) == []


def test_the_dlq_cli_lists_shows_and_purges(celery_app: Celery, capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps tables to the terminal width
    settings = bookgen_settings(celery_app)
    deadletter.record(settings, deadletter.DeadLetter(
        task_id="t-1", task_name="bookgen.export_to_pdf", args=[], kwargs={}, queue="export",
        transport_priority=4, exception_type="PermanentError", exception_message="disk full",
        traceback="Traceback ...", attempts=4, first_seen=1.0, failed_at=2.0,
    ))
    assert bookgen(["dlq", "list"]) == 0
    assert "bookgen.export_to_pdf" in capsys.readouterr().out
    assert bookgen(["dlq", "show", "t-1"]) == 0
    assert "disk full" in capsys.readouterr().out
    assert bookgen(["dlq", "show", "nope"]) == 2
    assert "no dead-letter entry" in capsys.readouterr().err
    assert bookgen(["dlq", "purge", "--yes"]) == 0
    assert deadletter.size(settings) == 0
