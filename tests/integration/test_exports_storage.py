"""Where finished books go (spec.exports) on a real S3-compatible server (versitygw on loopback) and on a
folder: what is recorded for each file, that the bytes arrive intact, that names never collide, and that
a wrong credential is a clear, retried error that a corrected Secret ends without a restart."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from bookgen_worker.app import bookgen_settings
from bookgen_worker.config import Settings
from bookgen_worker.errors import BookGenError
from bookgen_worker.jobs import store
from bookgen_worker.jobs.states import JobState
from bookgen_worker.queues import CONTENT_GENERATION, EXPORT, HIGH_PRIORITY, VALIDATION
from bookgen_worker.storage import fetch
from bookgen_worker.storage.deliver import deliver
from bookgen_worker.storage.s3 import StorageError
from bookgen_worker.storage.target import ExportTarget, S3Target, target_from_env
from celery import Celery

from tests.support.s3_server import SECRET_KEY, S3Server, running_s3, write_credentials
from tests.support.waiting import wait_for
from tests.support.workers import REPO_ROOT, WorkerProcess, start_worker

TERMINAL = {JobState.COMPLETED, JobState.COMPLETED_WITH_ERRORS, JobState.FAILED}


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with running_s3(tmp_path_factory.mktemp("s3")) as server:
        yield server


def bucket(s3: S3Server, credentials: Path, prefix: str = "books/") -> ExportTarget:
    return ExportTarget("s3", S3Target(bucket=s3.bucket, endpoint=s3.endpoint, prefix=prefix,
                                       credentials_dir=credentials))


def written(folder: Path, name: str, data: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(data)
    return path


def test_an_upload_is_recorded_as_its_s3_location_with_size_and_sha256(s3: S3Server, tmp_path: Path) -> None:
    target = bucket(s3, write_credentials(tmp_path / "creds"))
    data = b"# Ada Lovelace\n\nA biography.\n"
    stored = deliver(target, written(tmp_path / "out", "Ada-1.md", data), overwrite=True)
    assert stored.location == f"s3://{s3.bucket}/books/Ada-1.md"
    assert (stored.bytes, stored.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert s3.object_path("books/Ada-1.md").read_bytes() == data  # on the server's disk, byte for byte
    assert not (tmp_path / "out" / "Ada-1.md").exists(), "the scratch copy is removed once uploaded"
    assert target.s3 is not None
    assert b"".join(fetch.read_location(Settings(exports=target), stored.location)) == data


def test_new_exports_of_one_name_never_replace_each_other_in_the_bucket(s3: S3Server, tmp_path: Path) -> None:
    target = bucket(s3, write_credentials(tmp_path / "creds"), prefix="")
    first = deliver(target, written(tmp_path / "a", "Grace.md", b"first"), overwrite=False)
    second = deliver(target, written(tmp_path / "b", "Grace.md", b"second"), overwrite=False)
    assert (first.location, second.location) == (f"s3://{s3.bucket}/Grace.md", f"s3://{s3.bucket}/Grace-2.md")
    assert s3.object_path("Grace.md").read_bytes() == b"first"  # If-None-Match kept it
    again = deliver(target, written(tmp_path / "c", "Grace.md", b"job re-run"), overwrite=True)
    assert again.location == first.location and s3.object_path("Grace.md").read_bytes() == b"job re-run"


def test_a_wrong_credential_is_a_clear_error_and_a_corrected_secret_works_at_once(s3: S3Server, tmp_path: Path) -> None:
    creds = write_credentials(tmp_path / "creds", secret="not-the-secret")
    target = bucket(s3, creds)
    with pytest.raises(StorageError) as failed:
        deliver(target, written(tmp_path / "out", "Turing.pdf", b"%PDF-1.4"), overwrite=True)
    message = str(failed.value)
    assert "SignatureDoesNotMatch" in message and f"s3://{s3.bucket}/books/" in message and s3.endpoint in message
    assert str(creds) in message  # where to fix it
    assert "not-the-secret" not in message and SECRET_KEY not in message
    write_credentials(creds)  # the kubelet updates the mounted Secret; the same process goes on
    stored = deliver(target, written(tmp_path / "out", "Turing.pdf", b"%PDF-1.4"), overwrite=True)
    assert s3.object_path("books/Turing.pdf").read_bytes() == b"%PDF-1.4" and stored.bytes == 8


def test_fetch_reads_only_this_queues_files(s3: S3Server, tmp_path: Path) -> None:
    settings = Settings(output_dir=tmp_path / "out", exports=bucket(s3, write_credentials(tmp_path / "creds")))
    with pytest.raises(StorageError, match="not in this queue's export bucket"):
        list(fetch.read_location(settings, "s3://other-bucket/books/x.md"))
    local = Settings(output_dir=tmp_path / "out")
    written(tmp_path, "secret.txt", b"x")
    with pytest.raises(BookGenError, match="not a file of the export folder"):
        list(fetch.read_location(local, str(tmp_path / "out" / ".." / "secret.txt")))
    with pytest.raises(BookGenError, match="is in a bucket"):
        list(fetch.read_location(local, "s3://books/books/x.md"))


def test_the_target_comes_from_the_environment(tmp_path: Path) -> None:
    assert target_from_env({}) == ExportTarget()
    got = target_from_env({"BOOKGEN_EXPORTS": "s3", "BOOKGEN_S3_BUCKET": "b", "BOOKGEN_S3_PREFIX": "/x",
                           "BOOKGEN_S3_ENDPOINT": "http://s3:7070/", "BOOKGEN_S3_VERIFY_TLS": "false",
                           "BOOKGEN_S3_CREDENTIALS_DIR": str(tmp_path)})
    assert got.s3 == S3Target(bucket="b", endpoint="http://s3:7070", prefix="x/", verify_tls=False,
                              credentials_dir=tmp_path)


# -- whole jobs through real workers -----------------------------------------------------------------


def book_worker(celery_app: Celery, workdir: Path, env: dict[str, str]) -> WorkerProcess:
    return start_worker(
        redis_url=celery_app.conf.broker_url, queues=[HIGH_PRIORITY, CONTENT_GENERATION, VALIDATION, EXPORT],
        name="book", workdir=workdir, concurrency=3, with_probe_tasks=False,
        extra_env={"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])),
                   **env},
    )


def test_a_job_on_a_folder_records_each_files_size_and_sha256(celery_app: Celery, workdir: Path) -> None:
    settings = bookgen_settings(celery_app)
    worker = book_worker(celery_app, workdir, {})
    try:
        job_id = store.submit_job(settings, "Ada Lovelace", 2, 40, "md,docx,pdf")
        job = wait_for(lambda: (j := store.get_job(settings, job_id)).state in TERMINAL and j, timeout=90,
                       what="the job to finish")
    finally:
        worker.stop()
    assert job.state == JobState.COMPLETED, job.status
    files = {entry["format"]: entry for entry in fetch.job_files(settings, job_id)}
    assert set(files) == {"markdown", "docx", "pdf"}
    local = Settings(output_dir=workdir / "output")
    for entry in files.values():
        data = Path(entry["location"]).read_bytes()
        assert (entry["bytes"], entry["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
        assert b"".join(fetch.read_location(local, entry["location"])) == data
        assert job_id in Path(entry["location"]).name  # collision-free: the job's own id


def test_a_wrong_credential_holds_the_export_and_loses_nothing_until_the_secret_is_fixed(
    celery_app: Celery, workdir: Path, s3: S3Server
) -> None:
    settings = bookgen_settings(celery_app)
    creds = write_credentials(workdir / "s3-secret", secret="wrong-secret-key")
    env = {"BOOKGEN_EXPORTS": "s3", "BOOKGEN_S3_BUCKET": s3.bucket, "BOOKGEN_S3_ENDPOINT": s3.endpoint,
           "BOOKGEN_S3_PREFIX": "jobs/", "BOOKGEN_S3_CREDENTIALS_DIR": str(creds),
           # patient enough for the test to fix the Secret in between
           "BOOKGEN_RETRY_OVERRIDES": json.dumps({"export": {"max_retries": 30, "backoff_base": 1, "backoff_max": 1}})}
    worker = book_worker(celery_app, workdir, env)
    try:
        job_id = store.submit_job(settings, "Alan Turing", 2, 40, "md,docx,pdf")
        stuck = wait_for(lambda: (j := store.get_job(settings, job_id)).retrying and j, timeout=90,
                         what="the export to report its failure")
        assert stuck.state == JobState.RUNNING
        problem = " ".join(stuck.retrying.values())
        assert "SignatureDoesNotMatch" in problem and "retrying" in problem and "wrong-secret-key" not in problem
        assert "SignatureDoesNotMatch" in stuck.status  # `bookgen show` and `bookgen jobs` say it
        write_credentials(creds)  # the corrected Secret
        job = wait_for(lambda: (j := store.get_job(settings, job_id)).state in TERMINAL and j, timeout=90,
                       what="the job to finish")
    finally:
        worker.stop()
    assert job.state == JobState.COMPLETED, (job.status, job.errors)
    assert job.retrying == {} and job.errors == ()
    target = Settings(exports=target_from_env(env))
    for entry in fetch.job_files(settings, job_id):
        assert entry["location"].startswith(f"s3://{s3.bucket}/jobs/") and job_id in entry["location"]
        data = b"".join(fetch.read_location(target, entry["location"]))
        assert (len(data), hashlib.sha256(data).hexdigest()) == (entry["bytes"], entry["sha256"])
        assert s3.object_path(entry["location"].split("/", 3)[3]).read_bytes() == data
    assert not list((workdir / "output").glob("*.*")), "nothing is left in the scratch folder"
