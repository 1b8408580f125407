"""A worker that dies between registering a job's steps in Redis and publishing them, or a client
that dies between registering a submit or a resume and sending its message: the job stalls until the
outbox sweep sends the message, then completes with every step done once (real redis-server, real
`celery worker` processes)."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
import redis
from bookgen_worker.app import bookgen_settings
from bookgen_worker.config import Settings
from bookgen_worker.jobs import orchestration, outbox, store
from bookgen_worker.jobs.records import STAGE_FRAMING, JobRecord
from bookgen_worker.jobs.states import TERMINAL, InvalidTransition, JobState
from bookgen_worker.queues import CONTENT_GENERATION, EXPORT, HIGH_PRIORITY, MONITORING, VALIDATION, priority_list_keys
from bookgen_worker.tasks.generation import generate_chapter
from celery import Celery

from tests.support.waiting import wait_for
from tests.support.workers import WorkerProcess, start_worker

WORDS = 60
BOOK_QUEUES = [HIGH_PRIORITY, CONTENT_GENERATION, VALIDATION, EXPORT]


class WorkerDied(Exception):
    """Stands for the SIGKILL that hits a worker right after Redis accepted its transaction."""


def die(*_args: object, **_kwargs: object) -> None:
    raise WorkerDied


@pytest.fixture
def settings(celery_app: Celery) -> Settings:
    return bookgen_settings(celery_app)


def book_worker(celery_app: Celery, workdir: Path) -> WorkerProcess:
    return start_worker(redis_url=celery_app.conf.broker_url, queues=BOOK_QUEUES, name="book", workdir=workdir,
                        concurrency=4)


def running_job(settings: Settings, monkeypatch: pytest.MonkeyPatch, chapters: int) -> str:
    """A job just moved to RUNNING by job.start, with nothing sent yet: this test plays job.start."""
    with monkeypatch.context() as patched:
        patched.setattr(outbox, "send_step", lambda *_args, **_kwargs: None)
        job_id = store.submit_job(settings, "Ada Lovelace", chapters, WORDS, "md", parallel=2)
    store.try_transition(settings, job_id, {JobState.PENDING}, JobState.VALIDATING)
    store.finish_step(settings, job_id, "start", result={"valid": True})
    store.try_transition(settings, job_id, {JobState.VALIDATING}, JobState.RUNNING)
    return job_id


def monitoring_worker(celery_app: Celery, workdir: Path) -> WorkerProcess:
    """Where beat's sweep runs; every entry counts as lost there (age 0)."""
    return start_worker(redis_url=celery_app.conf.broker_url, queues=[MONITORING], name="monitoring",
                        workdir=workdir, extra_env={"BOOKGEN_JOB_SWEEP_AGE": "0", "BOOKGEN_METRICS_PORT": "off"})


def nudge(celery_app: Celery, job_id: str) -> None:
    """What a redelivered step callback does: advance the job, through a real worker, and wait for it."""
    celery_app.signature(store.ADVANCE_TASK, args=(job_id,)).apply_async().get(timeout=30)


def content_pending(redis_client: redis.Redis, settings: Settings) -> int:
    keys = priority_list_keys(CONTENT_GENERATION, settings.priority_steps, settings.priority_separator)
    return sum(int(redis_client.llen(key)) for key in keys)


def finished(settings: Settings, job_id: str) -> JobRecord:
    return wait_for(lambda: (job := store.get_job(settings, job_id)).state in TERMINAL and job, timeout=90,
                    what=f"job {job_id} to finish")


def succeeded(worker: WorkerProcess, task: str) -> list[str]:
    return re.findall(rf"Task {re.escape(task)}\[([0-9a-f-]+)\] succeeded", worker.log())


def test_chapters_registered_by_a_worker_that_died_before_sending_them_are_sent_by_the_sweep(
    settings: Settings, celery_app: Celery, redis_client: redis.Redis, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = running_job(settings, monkeypatch, chapters=4)
    claimed = store.claim_chapters(settings, job_id)  # the dying worker's transaction; it publishes nothing
    assert [message.step for message in claimed] == ["chapter:1", "chapter:2"]
    worker = book_worker(celery_app, workdir)
    try:
        nudge(celery_app, job_id)
        stalled = store.get_job(settings, job_id)
        assert (stalled.state, stalled.in_flight, stalled.dispatched, stalled.chapters_done) == (
            JobState.RUNNING, 2, 2, 0), "advance sends nothing: the chapters count as in flight"
        assert content_pending(redis_client, settings) == 0
        assert sorted(store.step_results(settings, job_id)) == ["start"]
        with pytest.raises(InvalidTransition):
            store.resume_job(settings, job_id)  # and resume cannot help a RUNNING job

        assert outbox.sweep(celery_app, replace(settings, job_sweep_age=0)) == {"resent": 2, "dropped": 0}
        done = finished(settings, job_id)
        assert (done.state, done.chapters_done, done.chapters_failed) == (JobState.COMPLETED, 4, 0), done.errors
        assert (done.current, done.in_flight) == (done.total, 0)
        assert sorted(k for k in store.step_results(settings, job_id) if k.startswith("chapter:")) == [
            f"chapter:{n}" for n in range(1, 5)]
        written = wait_for(lambda: len(ids := succeeded(worker, "bookgen.generate_chapter")) == 4 and ids,
                           timeout=30, what="the worker to log four chapters")
        assert len(set(written)) == 4, "every chapter written once"
        assert {message.task_id for message in claimed} <= set(written), "sent again under their own ids"
        assert not redis_client.exists(store.outbox_key(settings, job_id))
    finally:
        worker.stop()


def test_a_stage_entered_by_a_worker_that_died_before_sending_its_steps_is_sent_by_the_sweep(
    settings: Settings, celery_app: Celery, redis_client: redis.Redis, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = running_job(settings, monkeypatch, chapters=3)
    while messages := store.claim_chapters(settings, job_id):  # the chapters, written here and counted
        for message in messages:
            store.finish_step(settings, job_id, message.step, result=generate_chapter(*message.args))
    with monkeypatch.context() as patched:
        patched.setattr(outbox, "send_step", die)
        with pytest.raises(WorkerDied):
            orchestration.advance(celery_app, settings, job_id)  # enters the framing stage, then dies
    assert store.get_job(settings, job_id).stage == STAGE_FRAMING
    framing = {m.step: m.task_id for m in outbox.entries(settings, job_id) if not m.step.startswith("chapter:")}
    assert set(framing) == {"introduction", "conclusion"}

    worker = book_worker(celery_app, workdir)
    monitor = monitoring_worker(celery_app, workdir)
    try:
        nudge(celery_app, job_id)
        stalled = store.get_job(settings, job_id)
        assert (stalled.state, stalled.stage) == (JobState.RUNNING, STAGE_FRAMING)
        assert "introduction" not in store.step_results(settings, job_id)
        assert content_pending(redis_client, settings) == 0

        # The beat task itself, sent by name: it must reach the monitoring worker (age 0 there).
        swept = celery_app.signature("bookgen.job.sweep").apply_async().get(timeout=30)
        assert swept == {"resent": 2, "dropped": 3}  # the chapters' entries were counted already
        done = finished(settings, job_id)
        assert (done.state, done.chapters_done, done.current) == (JobState.COMPLETED, 3, done.total), done.errors
        for step, task in (("introduction", "bookgen.generate_introduction"),
                           ("conclusion", "bookgen.generate_conclusion")):
            assert wait_for(lambda task=task: succeeded(worker, task), timeout=30, what=task) == [framing[step]]
        assert "bookgen.job.sweep" in monitor.log()
        assert not redis_client.exists(store.outbox_key(settings, job_id))
    finally:
        monitor.stop()
        worker.stop()


def test_jobs_whose_client_died_after_submit_or_resume_complete_once_the_sweep_sends_their_message(
    settings: Settings, celery_app: Celery, redis_client: redis.Redis, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patched:
        patched.setattr(outbox, "send_step", die)
        with pytest.raises(WorkerDied):
            store.submit_job(settings, "Grace Hopper", 2, WORDS, "md")
        [submitted] = store.list_jobs(settings)
        resumed = running_job(settings, monkeypatch, chapters=2)  # RUNNING, nothing claimed yet
        store.pause_job(settings, resumed)
        with pytest.raises(WorkerDied):
            store.resume_job(settings, resumed)
    assert (submitted.state, store.get_job(settings, resumed).state) == (JobState.PENDING, JobState.RUNNING)
    [start] = outbox.entries(settings, submitted.id)
    [advance] = outbox.entries(settings, resumed)
    assert (start.step, advance.step) == ("start", "advance")
    coordination = priority_list_keys(HIGH_PRIORITY, settings.priority_steps, settings.priority_separator)
    assert sum(int(redis_client.llen(key)) for key in coordination) == 0, "neither client sent anything"

    worker = book_worker(celery_app, workdir)
    monitor = monitoring_worker(celery_app, workdir)
    try:
        swept = celery_app.signature("bookgen.job.sweep").apply_async().get(timeout=30)
        assert swept == {"resent": 2, "dropped": 0}
        for job_id in (submitted.id, resumed):
            done = finished(settings, job_id)
            assert (done.state, done.chapters_done, done.current) == (JobState.COMPLETED, 2, done.total), done.errors
            assert not redis_client.exists(store.outbox_key(settings, job_id))
        for task, message in ((store.START_TASK, start), (store.ADVANCE_TASK, advance)):
            ran = wait_for(lambda task=task: succeeded(worker, task), timeout=30, what=task)
            assert ran == [message.task_id], "sent once, under the id registered with the job"
    finally:
        monitor.stop()
        worker.stop()


@pytest.mark.parametrize("died_in", [JobState.VALIDATING, JobState.RUNNING])
def test_a_start_redelivered_after_its_worker_died_mid_way_finishes_the_job(
    settings: Settings, celery_app: Celery, workdir: Path, monkeypatch: pytest.MonkeyPatch, died_in: JobState
) -> None:
    """acks_late gives a start whose worker died back to another worker; the job had already left
    PENDING (and, when RUNNING, nothing was claimed yet, so the outbox holds nothing to sweep)."""
    with monkeypatch.context() as patched:
        patched.setattr(outbox, "send_step", die)
        with pytest.raises(WorkerDied):
            store.submit_job(settings, "Ada Lovelace", 2, WORDS, "md")
    [job] = store.list_jobs(settings)
    job_id = job.id
    store.try_transition(settings, job_id, {JobState.PENDING}, JobState.VALIDATING)
    if died_in == JobState.RUNNING:
        store.finish_step(settings, job_id, "start", result={"valid": True})
        store.try_transition(settings, job_id, {JobState.VALIDATING}, JobState.RUNNING)
    [start] = outbox.entries(settings, job_id)
    worker = book_worker(celery_app, workdir)
    try:
        celery_app.signature(store.START_TASK, args=(job_id,)).apply_async(task_id=start.task_id).get(timeout=30)
        done = finished(settings, job_id)
        assert (done.state, done.chapters_done, done.current) == (JobState.COMPLETED, 2, done.total), done.errors
        assert succeeded(worker, store.START_TASK) == [start.task_id]
    finally:
        worker.stop()
