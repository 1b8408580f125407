"""`bookgen submit|pause|resume|cancel|jobs`: user mistakes give one clear line, never a traceback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from bookgen_operator.cli import main
from bookgen_worker.app import bookgen_settings
from bookgen_worker.jobs import store
from bookgen_worker.jobs.states import JobState
from celery import Celery


@pytest.fixture(autouse=True)
def _cli_reaches_the_test_redis(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> None:
    """main() reads the system to talk to from the environment, as a shell would give it."""
    monkeypatch.setenv("REDIS_URL", redis_url)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["submit", "  ", "--chapters", "3"], "subject of the biography must not be empty"),
        (["submit", "Ada", "--chapters", "0"], "chapters must be from 1 to 200"),
        (["submit", "Ada", "--words", "-5"], "cannot be negative"),
        (["submit", "Ada", "--formats", "md,epub"], "unknown export format 'epub'"),
        (["submit", "Ada", "--priority", "42"], "priority must be from 0 to 10"),
        (["pause", "no-such-job"], "no job with id 'no-such-job'"),
    ],
)
def test_bad_requests_print_one_line_and_store_nothing(
    celery_app: Celery, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bookgen: error: ") and message in err and "\n" not in err
    assert store.list_jobs(bookgen_settings(celery_app)) == []


def test_submit_pause_resume_cancel_and_list(celery_app: Celery, capsys: pytest.CaptureFixture[str]) -> None:
    settings = bookgen_settings(celery_app)  # no worker: the job stays PENDING while we act on it
    assert main(["submit", "Ada Lovelace", "--chapters", "3", "--words", "50", "--formats", "md,pdf"]) == 0
    job_id = capsys.readouterr().out.strip()
    assert store.get_job(settings, job_id).state == JobState.PENDING

    assert main(["pause", job_id]) == 0
    assert main(["pause", job_id]) == 2
    assert "can be paused" in capsys.readouterr().err
    assert main(["resume", job_id]) == 0
    assert store.get_job(settings, job_id).state == JobState.PENDING  # paused before running: validate again
    assert main(["cancel", job_id]) == 0
    assert "CANCELLED" in capsys.readouterr().out

    assert main(["jobs", "--json"]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert (listed["id"], listed["state"], listed["formats"]) == (job_id, "CANCELLED", ["markdown", "pdf"])
    assert main(["jobs"]) == 0
    assert job_id in capsys.readouterr().out


def test_an_unreachable_redis_is_one_line_naming_the_redacted_url() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again before use: nothing listens there
    env = {**os.environ, "REDIS_URL": f"redis://:s3cret-pw@127.0.0.1:{port}/0"}
    result = subprocess.run(
        [str(Path(sys.executable).with_name("bookgen")), "jobs"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"redis://:***@127.0.0.1:{port}/0" in lines[0]
    assert "s3cret-pw" not in result.stderr + result.stdout
