"""Whole-book jobs on a real redis-server and real `celery worker` processes (acceptance 5 and 6)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from bookgen_worker.app import bookgen_settings
from bookgen_worker.config import Settings
from bookgen_worker.jobs import store
from bookgen_worker.jobs.records import JobRecord
from bookgen_worker.jobs.states import JobState
from bookgen_worker.queues import CONTENT_GENERATION, EXPORT, HIGH_PRIORITY, VALIDATION, priority_list_keys
from celery import Celery
from docx import Document
from pypdf import PdfReader

from tests.support import blocking_tasks
from tests.support.waiting import wait_for
from tests.support.workers import REPO_ROOT, WorkerProcess, start_worker

WORDS = 60  # per chapter: small, so the whole book is quick
EXTRA_MODULES = blocking_tasks.MODULE


def worker(redis_url: str, workdir: Path, name: str, queues: list[str], concurrency: int) -> WorkerProcess:
    pythonpath = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
    return start_worker(
        redis_url=redis_url, queues=queues, name=name, workdir=workdir, concurrency=concurrency,
        with_probe_tasks=False,
        extra_env={"BOOKGEN_EXTRA_TASK_MODULES": EXTRA_MODULES, "PYTHONPATH": pythonpath,
                   "BOOKGEN_OUTPUT_DIR": str(workdir / "output")},
    )


@pytest.fixture
def settings(celery_app: Celery) -> Settings:
    return bookgen_settings(celery_app)


@pytest.fixture
def all_queues_worker(celery_app: Celery, workdir: Path) -> Iterator[WorkerProcess]:
    queues = [HIGH_PRIORITY, CONTENT_GENERATION, VALIDATION, EXPORT]
    process = worker(celery_app.conf.broker_url, workdir, "book", queues, concurrency=4)
    yield process
    process.stop()


@pytest.fixture
def coordinator(celery_app: Celery, workdir: Path) -> Iterator[WorkerProcess]:
    """Job steps, validation and export; chapters go to content workers the tests start themselves."""
    process = worker(celery_app.conf.broker_url, workdir, "coord", [HIGH_PRIORITY, VALIDATION, EXPORT], 2)
    yield process
    process.stop()


@pytest.fixture
def held_content_worker(
    celery_app: Celery, workdir: Path, redis_client: redis.Redis, coordinator: WorkerProcess
) -> Iterator[WorkerProcess]:
    """A one-slot content worker that a blocking task holds until the test sets the release key,
    so the job's chapters stay queued while the test acts on the job."""
    content = worker(celery_app.conf.broker_url, workdir, "content", [CONTENT_GENERATION], 1)
    blocking_tasks.block.apply_async(args=("hold",), queue=CONTENT_GENERATION)
    wait_for(lambda: redis_client.llen(blocking_tasks.STARTED_KEY) == 1, timeout=30, what="the blocker to start")
    yield content
    release(redis_client)
    content.stop()


def release(redis_client: redis.Redis) -> None:
    redis_client.set(blocking_tasks.RELEASE_KEY, 1)


def pending(redis_client: redis.Redis, settings: Settings, queue: str) -> int:
    keys = priority_list_keys(queue, settings.priority_steps, settings.priority_separator)
    return sum(int(redis_client.llen(key)) for key in keys)


def settled(redis_client: redis.Redis, settings: Settings) -> bool:
    """Nothing waits in the content queue and nothing is delivered-but-unacknowledged anywhere."""
    return pending(redis_client, settings, CONTENT_GENERATION) == 0 and redis_client.hlen("unacked") == 0


def watch(settings: Settings, job_id: str, seen: list[int], until: set[JobState], timeout: float = 60) -> JobRecord:
    def reached() -> JobRecord | None:
        job = store.get_job(settings, job_id)
        seen.append(job.current)
        return job if job.state in until else None

    return wait_for(reached, timeout=timeout, interval=0.01, what=f"job {job_id} to reach {sorted(until)}")


def test_a_ten_chapter_job_completes_with_markdown_word_and_pdf(
    settings: Settings, all_queues_worker: WorkerProcess, workdir: Path
) -> None:
    job_id = store.submit_job(settings, "Ada Lovelace", 10, WORDS, "md,docx,pdf", parallel=4)
    seen: list[int] = []
    job = watch(settings, job_id, seen, {JobState.COMPLETED, JobState.COMPLETED_WITH_ERRORS, JobState.FAILED})

    assert job.state == JobState.COMPLETED, (job.status, job.errors)
    assert (job.chapters_done, job.chapters) == (10, 10)
    assert job.current == job.total == 10 + 4 + 3
    assert seen == sorted(seen), "progress never goes back"
    assert len({value for value in seen if 0 < value < job.total}) >= 3, f"intermediate progress: {seen}"

    titles = [chapter["title"] for chapter in
              sorted((entry["result"] for key, entry in store.step_results(settings, job_id).items()
                      if key.startswith("chapter:")), key=lambda chapter: chapter["number"])]
    assert len(titles) == 10
    output = (workdir / "output").resolve()
    paths = {fmt: Path(path) for fmt, path in job.outputs.items()}
    assert {fmt: path.suffix for fmt, path in paths.items()} == {"markdown": ".md", "docx": ".docx", "pdf": ".pdf"}
    assert all(path.resolve().is_relative_to(output) and path.stat().st_size > 0 for path in paths.values())

    markdown = paths["markdown"].read_text()
    assert "Ada Lovelace" in markdown
    assert all(title in markdown for title in titles)

    document = Document(str(paths["docx"]))
    headings = [p.text for p in document.paragraphs if p.style.name.startswith(("Heading", "Title"))]
    assert any("Ada Lovelace" in heading for heading in headings), headings
    assert all(any(title in heading for heading in headings) for title in titles), headings
    assert any("Introduction" in heading for heading in headings) and any("Conclusion" in h for h in headings)

    reader = PdfReader(str(paths["pdf"]))
    pages = [page.extract_text() or "" for page in reader.pages]
    assert "Ada Lovelace" in pages[0]
    assert len(pages) >= 2
    for number, text in enumerate(pages, start=1):
        assert re.search(rf"(?<!\d){number}(?!\d)", text.strip().splitlines()[-1] if text.strip() else ""), (
            f"page {number} shows no page number at its foot: {text[-200:]!r}"
        )


def test_pause_stops_chapters_from_starting_and_resume_finishes_the_book(
    settings: Settings, held_content_worker: WorkerProcess, redis_client: redis.Redis, celery_app: Celery
) -> None:
    job_id = store.submit_job(settings, "Grace Hopper", 6, WORDS, "md", parallel=3)
    wait_for(lambda: store.get_job(settings, job_id).dispatched == 3, timeout=30, what="three chapters to be sent")
    assert pending(redis_client, settings, CONTENT_GENERATION) == 3

    assert store.pause_job(settings, job_id).state == JobState.PAUSED
    release(redis_client)  # the worker now reaches the queued chapters: each is held, none runs
    wait_for(lambda: store.get_job(settings, job_id).held == (1, 2, 3), timeout=30, what="the chapters to be held")
    wait_for(lambda: settled(redis_client, settings), timeout=30, what="the content queue to settle")
    # An explicit nudge of the coordinator while paused sends nothing either.
    celery_app.signature(store.ADVANCE_TASK, args=(job_id,)).apply_async().get(timeout=30)
    paused = store.get_job(settings, job_id)
    assert (paused.state, paused.chapters_done, paused.in_flight, paused.dispatched) == (JobState.PAUSED, 0, 0, 3)
    assert pending(redis_client, settings, CONTENT_GENERATION) == 0
    assert sorted(store.step_results(settings, job_id)) == ["start"]
    assert "holding chapter:1" in held_content_worker.log()

    assert store.resume_job(settings, job_id).state == JobState.RUNNING
    done = watch(settings, job_id, [], {JobState.COMPLETED, JobState.COMPLETED_WITH_ERRORS, JobState.FAILED})
    assert (done.state, done.chapters_done, done.current, done.held) == (JobState.COMPLETED, 6, done.total, ())
    assert sorted(int(key.split(":")[1]) for key in store.step_results(settings, job_id)
                  if key.startswith("chapter:")) == [1, 2, 3, 4, 5, 6]


def test_cancel_revokes_the_queued_chapters_and_ends_cancelled(
    settings: Settings, held_content_worker: WorkerProcess, redis_client: redis.Redis, celery_app: Celery
) -> None:
    job_id = store.submit_job(settings, "Alan Turing", 6, WORDS, "md", parallel=3)
    wait_for(lambda: store.get_job(settings, job_id).dispatched == 3, timeout=30, what="three chapters to be sent")
    # The job counts a chapter as dispatched when the coordinator sends it; the message reaches the
    # list a moment later (on a loaded machine, visibly later).
    wait_for(lambda: pending(redis_client, settings, CONTENT_GENERATION) == 3, timeout=30,
             what="three chapters waiting in the content queue")
    queued = {step: task_id for step, task_id in store.queued_tasks(settings, job_id).items()
              if step.startswith("chapter:")}
    assert len(queued) == 3

    job, revoked = store.cancel_job(settings, job_id)
    assert job.state == JobState.CANCELLED
    assert set(queued.values()) <= set(revoked)

    release(redis_client)  # the content worker now receives the revoked chapters and drops them
    for task_id in queued.values():
        wait_for(lambda task_id=task_id: celery_app.AsyncResult(task_id).state == "REVOKED", timeout=30,
                 what=f"chapter task {task_id} to be revoked")
    wait_for(lambda: settled(redis_client, settings), timeout=30, what="the content queue to settle")
    final = store.get_job(settings, job_id)
    assert (final.state, final.chapters_done, final.outputs) == (JobState.CANCELLED, 0, {})
    assert sorted(store.step_results(settings, job_id)) == ["start"]


def test_a_worker_started_after_the_cancel_drops_the_jobs_chapters(
    settings: Settings, coordinator: WorkerProcess, redis_client: redis.Redis, celery_app: Celery, workdir: Path
) -> None:
    """Revokes live in the memory of the workers that heard them; a newcomer (autoscaled) did not."""
    job_id = store.submit_job(settings, "Alan Turing", 6, WORDS, "md", parallel=3)
    wait_for(lambda: store.get_job(settings, job_id).dispatched == 3, timeout=30, what="three chapters to be sent")
    store.cancel_job(settings, job_id)

    late = worker(celery_app.conf.broker_url, workdir, "late", [CONTENT_GENERATION], 1)
    try:
        wait_for(lambda: settled(redis_client, settings), timeout=30, what="the late worker to take the chapters")
        assert late.log().count("dropping chapter:") == 3
    finally:
        late.stop()
    final = store.get_job(settings, job_id)
    assert (final.state, final.chapters_done, final.outputs) == (JobState.CANCELLED, 0, {})
    assert sorted(store.step_results(settings, job_id)) == ["start"]


def test_the_cli_submits_waits_and_names_the_files(
    celery_app: Celery, all_queues_worker: WorkerProcess, workdir: Path
) -> None:
    bookgen = str(Path(sys.executable).with_name("bookgen"))
    env = {**os.environ, "REDIS_URL": celery_app.conf.broker_url}
    result = subprocess.run(
        [bookgen, "submit", "Marie Curie", "--chapters", "3", "--words", str(WORDS), "--formats", "md,docx",
         "--wait"], env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    job_id = result.stdout.splitlines()[0].strip()
    assert f"{job_id} COMPLETED" in result.stdout
    written = re.findall(r"^\s+(markdown|docx): (.+)$", result.stdout, flags=re.MULTILINE)
    assert {fmt for fmt, _ in written} == {"markdown", "docx"}
    assert all(Path(path).is_file() for _, path in written)
