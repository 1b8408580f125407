"""`bookgen status` prints what measure() measures, per queue, as a table (and as JSON)."""

from __future__ import annotations

import json
import re

import pytest
from bookgen_operator.cli import main
from bookgen_operator.cli.status import format_age
from bookgen_worker.queues import QUEUES, transport_priority
from celery import Celery


@pytest.fixture(autouse=True)
def _cli_reaches_the_test_redis(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> None:
    """main() reads the system to talk to from the environment, as a shell would give it."""
    monkeypatch.setenv("REDIS_URL", redis_url)


def _send(app: Celery, queue: str, count: int) -> None:
    for index in range(count):
        app.send_task("bookgen.probe.record", args=["x"], queue=queue, routing_key=queue,
                      priority=transport_priority((index * 3) % 11))


def test_status_table_shows_pending_in_flight_and_age_per_queue(
    celery_app: Celery, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    _send(celery_app, "export", 4)
    _send(celery_app, "validation", 2)

    assert main(["status"]) == 0
    out = capsys.readouterr().out
    rows = {m.group(1): m.group(2) for m in re.finditer(r"│ (\w+)\s+│\s+(\d+)\s+│", out)}
    assert rows == {**{q: "0" for q in QUEUES}, "export": "4", "validation": "2", "total": "6"}
    assert "dead letters: 0" in out
    assert "No worker has reported" in out


def test_status_json_is_the_measurement(celery_app: Celery, capsys: pytest.CaptureFixture[str]) -> None:
    _send(celery_app, "content_generation", 3)
    assert main(["status", "--json", "--queue", "content_generation"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert list(data["queues"]) == ["content_generation"]
    assert data["queues"]["content_generation"]["pending"] == 3
    assert data["queues"]["content_generation"]["oldest_pending_age"] >= 0
    assert data["workers"] == []


def test_unknown_queue_and_unreachable_redis_are_one_line_errors(
    celery_app: Celery, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["status", "--queue", "nope"]) == 2
    assert capsys.readouterr().err.strip().startswith("bookgen: error: unknown queue(s) nope")
    monkeypatch.setenv("REDIS_URL", "redis://:secret@127.0.0.1:1/0")
    assert main(["status"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bookgen: error: cannot reach Redis") and "\n" not in err and "secret" not in err


def test_ages_read_like_durations() -> None:
    assert [format_age(a) for a in (None, 4.25, 125, 7300)] == ["-", "4.2s", "2m05s", "2h01m"]
