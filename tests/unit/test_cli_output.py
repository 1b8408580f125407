"""`-o json|yaml` on every listing and show command, whole tables when piped, `--version`, and
`bookgen up` logging no line per HTTP request (issue 16.4)."""

from __future__ import annotations

import http.server
import json
import logging
import threading
from collections.abc import Iterator

import httpx
import pytest
import yaml
from bookgen_operator.cli import main, version
from bookgen_worker import deadletter
from bookgen_worker.app import bookgen_settings
from celery import Celery

LONG_SUBJECT = "Ada Lovelace, Countess of Lovelace, who wrote the first published algorithm " * 2


@pytest.fixture(autouse=True)
def _cli_reaches_the_test_redis(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)


@pytest.fixture
def job_id(celery_app: Celery, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["submit", LONG_SUBJECT.strip(), "--chapters", "2", "--formats", "md"]) == 0
    return capsys.readouterr().out.strip()


@pytest.fixture
def dead_letter(celery_app: Celery) -> str:
    deadletter.record(bookgen_settings(celery_app), deadletter.DeadLetter(
        task_id="t-1", task_name="bookgen.export_to_pdf", args=["a", 1], kwargs={"x": [1, 2]}, queue="export",
        transport_priority=4, exception_type="PermanentError", exception_message="disk full\nsecond line",
        traceback="Traceback ...", attempts=4, first_seen=1.0, failed_at=2.0,
    ))
    return "t-1"


def _out(argv: list[str], capsys: pytest.CaptureFixture[str], code: int = 0) -> str:
    assert main(argv) == code
    return capsys.readouterr().out


def test_jobs_and_show_in_json_and_yaml(job_id: str, capsys: pytest.CaptureFixture[str]) -> None:
    as_yaml = yaml.safe_load(_out(["jobs", "-o", "yaml"], capsys))
    as_json = json.loads(_out(["jobs", "-o", "json"], capsys))
    assert as_yaml == as_json == json.loads(_out(["jobs", "--json"], capsys))
    assert [job["id"] for job in as_json] == [job_id]
    shown = json.loads(_out(["show", job_id, "-o", "json"], capsys))
    assert shown == as_json[0] == yaml.safe_load(_out(["show", job_id, "-o", "yaml"], capsys))
    assert job_id in _out(["show", job_id], capsys)


def test_watch_prints_one_record_per_change_and_ends_with_the_job(job_id: str,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cancel", job_id]) == 0
    capsys.readouterr()
    lines = _out(["watch", job_id, "-o", "json"], capsys, code=1).splitlines()  # 1: it did not complete
    assert [json.loads(line)["state"] for line in lines] == ["CANCELLED"]
    docs = list(yaml.safe_load_all(_out(["watch", job_id, "-o", "yaml"], capsys, code=1)))
    assert [d["id"] for d in docs if d] == [job_id]


def test_dlq_list_and_show_in_json_and_yaml(dead_letter: str, capsys: pytest.CaptureFixture[str]) -> None:
    [listed] = json.loads(_out(["dlq", "list", "-o", "json"], capsys))
    assert (listed["task_id"], listed["args"], listed["kwargs"]) == ("t-1", ["a", 1], {"x": [1, 2]})
    assert yaml.safe_load(_out(["dlq", "list", "-o", "yaml"], capsys)) == [listed]
    assert json.loads(_out(["dlq", "show", dead_letter, "-o", "json"], capsys)) == listed
    assert yaml.safe_load(_out(["dlq", "show", dead_letter, "-o", "yaml"], capsys))["traceback"] == "Traceback ..."


def test_status_in_yaml(celery_app: Celery, capsys: pytest.CaptureFixture[str]) -> None:
    data = yaml.safe_load(_out(["status", "-o", "yaml"], capsys))
    assert set(data) >= {"queues", "dead_letters", "workers"} and "export" in data["queues"]


def test_piped_tables_are_whole(job_id: str, dead_letter: str, capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")  # a terminal's width must not cut what goes into a pipe
    [row] = [line for line in _out(["jobs"], capsys).splitlines() if job_id in line]
    assert LONG_SUBJECT.strip() in row  # one line, nothing cut or wrapped
    [row] = [line for line in _out(["dlq", "list"], capsys).splitlines() if "t-1" in line]
    assert "bookgen.export_to_pdf" in row and "PermanentError: disk full" in row


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"bookgen {version()}" and version()[0].isdigit()


@pytest.fixture
def http_endpoint() -> Iterator[str]:
    class Quiet(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api/v1/query"
    server.shutdown()
    server.server_close()


def test_bookgen_up_logs_no_line_per_http_request(http_endpoint: str, caplog: pytest.LogCaptureFixture) -> None:
    from bookgen_operator.cli.up import _logging

    previous = {name: logging.getLogger(name).level for name in ("httpx", "httpcore", "urllib3")}
    try:
        _logging(view=False)  # --no-view: INFO lines, as in a log file
        with caplog.at_level(logging.INFO):
            httpx.get(http_endpoint)  # what the Prometheus and endpoint sources do every poll
            logging.getLogger("bookgen_operator.core.autoscaler.loop").info("content: 1 -> 2")
        messages = [record.getMessage() for record in caplog.records]
        assert messages == ["content: 1 -> 2"]  # the decision, not "HTTP Request: GET ..."
    finally:
        for name, level in previous.items():
            logging.getLogger(name).setLevel(level)
