"""`bookgen files` and `bookgen fetch` against a real `bookgen up`: the books on this machine's folder,
and in a real S3-compatible server (versitygw on loopback) named by spec.exports.s3."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.local.conftest import BOOKGEN, spec_yaml
from tests.support.s3_server import running_s3, write_credentials


def bookgen(*argv: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([BOOKGEN, *argv], capture_output=True, text=True, timeout=180,
                          env={**os.environ, **(env or {})}, check=False)
    if check:
        assert done.returncode == 0, f"bookgen {' '.join(argv)}: {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def book(state: Path, env: dict[str, str] | None = None) -> str:
    done = bookgen("--state-dir", str(state), "submit", "Ada Lovelace", "--chapters", "2", "--words", "40",
                   "--wait", "-o", "json", env=env)
    records = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    assert records[-1]["state"] == "COMPLETED", records[-1]
    return str(records[-1]["id"])


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_files_and_fetch_from_a_local_folder_check_every_byte(up_factory: Any, tmp_path: Path) -> None:
    up = up_factory(spec_yaml())
    up.wait_ready(2)
    state = up.state_dir
    job_id = book(state)
    files = json.loads(bookgen("--state-dir", str(state), "files", job_id, "-o", "json").stdout)
    assert {entry["format"] for entry in files} == {"markdown", "docx", "pdf"}
    table = bookgen("--state-dir", str(state), "files", job_id).stdout
    assert all(entry["sha256"] in table and Path(entry["location"]).name in table for entry in files)

    out = tmp_path / "books"
    bookgen("--state-dir", str(state), "fetch", job_id, "-o", str(out))
    for entry in files:
        got = out / Path(entry["location"]).name
        assert sha(got) == entry["sha256"] == sha(Path(entry["location"]))
        assert got.stat().st_size == entry["bytes"]

    # A file changed after the worker wrote it is refused, and nothing is saved in its place.
    markdown = next(Path(e["location"]) for e in files if e["format"] == "markdown")
    markdown.write_text(markdown.read_text() + "tampered\n")
    again = tmp_path / "again"
    failed = bookgen("--state-dir", str(state), "fetch", job_id, "-o", str(again), "--format", "md", check=False)
    assert failed.returncode == 2 and len(failed.stderr.strip().splitlines()) == 1, failed.stderr
    assert "sha256" in failed.stderr and "nothing was saved" in failed.stderr
    assert list(again.iterdir()) == []


def test_a_local_run_exporting_to_a_bucket(up_factory: Any, tmp_path: Path) -> None:
    with running_s3(tmp_path) as s3:
        creds = write_credentials(tmp_path / "s3-credentials")
        body = yaml.safe_load(spec_yaml())
        body["spec"]["exports"] = {"s3": {"endpoint": s3.endpoint, "bucket": s3.bucket, "prefix": "local/"}}
        env = {"BOOKGEN_S3_CREDENTIALS_DIR": str(creds)}
        up = up_factory(yaml.safe_dump(body), extra_env=env)
        up.wait_ready(2)
        job_id = book(up.state_dir)
        files = json.loads(bookgen("--state-dir", str(up.state_dir), "files", job_id, "-o", "json").stdout)
        assert all(entry["location"].startswith(f"s3://{s3.bucket}/local/") for entry in files), files
        out = tmp_path / "books"
        # Another shell: only the credentials; the endpoint is recorded with each file.
        fetched = bookgen("--state-dir", str(up.state_dir), "fetch", job_id, "-o", str(out), env=env).stdout
        assert fetched.count(" ok") == 3, fetched
        for entry in files:
            got = out / entry["location"].rsplit("/", 1)[1]
            assert sha(got) == entry["sha256"]
            assert got.read_bytes() == s3.object_path(entry["location"].split("/", 3)[3]).read_bytes()
