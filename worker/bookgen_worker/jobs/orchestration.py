"""The coordination tasks of a book job (`bookgen.job.*`, routed to high_priority).

Flow: `job.start` validates (VALIDATING) and moves to RUNNING; `advance` then walks the stages
chapters -> framing (introduction + conclusion) -> checking (validate_complete_biography) ->
exporting (one task per format, in parallel) -> a terminal state. Content tasks are called by
name and each carries two callbacks: `job.step_done` (link) and `job.step_failed` (link_error,
called only after the task's own retries are exhausted). Each callback counts the step once in
Redis and calls `advance` again, which is level-based: it looks at what is done and sends what is
due, so a duplicate or late callback is harmless.

Why counting in Redis and not a chord: a chord needs every header task to succeed and keeps its
state in the result backend, where one failed chapter fails the whole book and a revoked member
leaves it hanging. Counting ourselves lets one failed chapter end as COMPLETED_WITH_ERRORS.

Why pause works at the start of each chapter (jobs/gate.py) plus a per-job in-flight window
(job.parallel, default 16), and not by chapter tasks re-queuing themselves with a countdown: the
content tasks belong to the generation module and know nothing of jobs, and a task that polls its
job by re-queuing spins, holds messages with ETAs (which must stay below the visibility timeout)
and shows up as demand to the autoscaler. Instead a paused job sends nothing new, and a chapter
that reaches a worker while its job is paused is put back on the job's `held` list and dropped;
resume sends the held chapters first. The window bounds how many chapters a cancel must revoke
(their ids are stored before sending, see store.claim_chapters) and keeps one big book from
flooding the queue ahead of other jobs.

Every step's message is recorded with its registration and published right after; if this worker
dies in between, beat's sweep publishes it (jobs/outbox.py).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery

from ..app import bookgen_settings
from ..config import Settings
from ..content.filenames import job_file_stem
from ..errors import InvalidInput
from ..redis_client import get_redis
from ..tasks.base import bookgen_task
from . import gate, outbox, plan, store  # noqa: F401  (gate registers the admission check in every worker)
from .records import (
    FORMAT_TASKS,
    STAGE_CHAPTERS,
    STAGE_CHECKING,
    STAGE_EXPORTING,
    STAGE_FRAMING,
    JobRecord,
    StepMessage,
    section_words,
    validate_inputs,
)
from .states import JobState

logger = logging.getLogger(__name__)

STEP_DONE_TASK = store.STEP_DONE_TASK
STEP_FAILED_TASK = store.STEP_FAILED_TASK


def _send(celery_app: Celery, settings: Settings, job_id: str, messages: list[StepMessage] | None) -> None:
    for message in messages or ():
        outbox.publish(celery_app, settings, job_id, message)


def export_filename(job: JobRecord) -> str:
    """Readable subject plus the whole job id, however long the subject: two jobs never share a file.
    The export tasks sanitise it again and keep it inside the output folder."""
    return job_file_stem(job.subject, job.id)


def advance(celery_app: Celery, settings: Settings, job_id: str) -> None:
    """Send whatever is due for the job now; a no-op unless it is RUNNING."""
    job = store.get_job(settings, job_id)
    if job.state != JobState.RUNNING:
        return
    if job.stage == STAGE_CHAPTERS:
        _advance_chapters(celery_app, settings, job_id)
        return
    results = store.step_results(settings, job_id)
    if job.stage == STAGE_FRAMING and {"introduction", "conclusion"} <= results.keys():
        steps: dict[str, tuple[str, tuple[object, ...]]] = {
            "validate": ("bookgen.validate_complete_biography", (plan.assemble(job, results),))}
        _enter(celery_app, settings, job_id, (STAGE_FRAMING, STAGE_CHECKING), steps,
               "Validating the complete biography")
    elif job.stage == STAGE_CHECKING and "validate" in results:
        biography, filename = plan.assemble(job, results), export_filename(job)
        # overwrite: the name is this job's own (its id), so a re-run of the step replaces its own file.
        # The job id lets a failing delivery say so in the job's record while it waits for a retry.
        steps = {f"export:{fmt}": (FORMAT_TASKS[fmt], (biography, filename, True, job_id)) for fmt in job.formats}
        _enter(celery_app, settings, job_id, (STAGE_CHECKING, STAGE_EXPORTING), steps,
               f"Exporting: 0/{len(job.formats)} formats")
    elif job.stage == STAGE_EXPORTING and all(f"export:{fmt}" in results for fmt in job.formats):
        end = plan.outcome(job, results)
        store.finish_job(settings, job_id, end.state, end.status, end.outputs, end.errors, files=end.files)


def _advance_chapters(celery_app: Celery, settings: Settings, job_id: str) -> None:
    _send(celery_app, settings, job_id, store.claim_chapters(settings, job_id))
    job = store.get_job(settings, job_id)
    if job.chapters_finished < job.chapters:
        return
    if job.chapters_done == 0:
        store.finish_job(settings, job_id, JobState.FAILED, "Failed: no chapter could be written")
        return
    titles = plan.chapter_titles(store.step_results(settings, job_id))
    words = section_words(job.target_words)
    steps = {"introduction": ("bookgen.generate_introduction", (job.subject, titles, words)),
             "conclusion": ("bookgen.generate_conclusion", (job.subject, titles, words))}
    _enter(celery_app, settings, job_id, (STAGE_CHAPTERS, STAGE_FRAMING), steps,
           "Writing the introduction and the conclusion")


def _enter(celery_app: Celery, settings: Settings, job_id: str, stages: tuple[str, str],
           steps: dict[str, tuple[str, tuple[Any, ...]]], status: str) -> None:
    """Move from one stage to the next, once (the record read earlier may be stale), and send the
    new stage's steps."""
    _send(celery_app, settings, job_id, store.enter_stage(settings, job_id, *stages, steps, status))


@bookgen_task("job.start")
def start(self: Any, job_id: str) -> str:
    """VALIDATING: check the stored request again (jobs may be written by other clients), then RUNNING."""
    settings = bookgen_settings(self.app)
    # Delivered: nothing left for a cancel to revoke, and the sweep reads the entry as sent.
    get_redis(settings).hdel(store.tasks_key(settings, job_id), "start")
    job = store.try_transition(settings, job_id, {JobState.PENDING}, JobState.VALIDATING,
                               status="Validating the request")
    if job is None:
        # A redelivered start (acks_late) whose worker died after moving the job on: validate again
        # if it died while VALIDATING; if it died once RUNNING, possibly before anything was claimed
        # (so no outbox entry exists), advance: level-based, a no-op when everything is sent.
        job = store.get_job(settings, job_id)
        if job.state != JobState.VALIDATING:
            advance(self.app, settings, job_id)
            return "skipped"
    try:
        validate_inputs(job.subject, job.chapters, job.target_words, job.formats, job.priority, job.parallel)
    except InvalidInput as exc:
        store.try_transition(settings, job_id, {JobState.VALIDATING}, JobState.FAILED,
                             status=f"Failed: {exc}", errors=(*job.errors, f"validation: {exc}"))
        return "invalid"
    store.finish_step(settings, job_id, "start", result={"valid": True})
    running = store.try_transition(settings, job_id, {JobState.VALIDATING}, JobState.RUNNING,
                                   status=f"Writing chapters: 0/{job.chapters} done")
    if running is None:
        return "held"  # paused or cancelled while validating
    advance(self.app, settings, job_id)
    return "running"


@bookgen_task("job.advance")
def advance_task(self: Any, job_id: str) -> None:
    """Sent on resume: continue a RUNNING job from wherever it stopped."""
    settings = bookgen_settings(self.app)
    get_redis(settings).hdel(store.tasks_key(settings, job_id), "advance")  # delivered, as in start
    advance(self.app, settings, job_id)


@bookgen_task("job.step_done")
def step_done(self: Any, result: Any, job_id: str, step: str) -> None:
    """Link callback of every content task: count the step, then send what became due."""
    settings = bookgen_settings(self.app)
    store.finish_step(settings, job_id, step, result=result, status=plan.status_line)
    # Always advance, even for a step counted before: this callback may be a redelivery after its
    # worker died between counting and sending the next steps (advance is idempotent).
    advance(self.app, settings, job_id)


@bookgen_task("job.step_failed")
def step_failed(self: Any, failed_task_id: str, job_id: str, step: str) -> None:
    """Error callback (after the content task's retries): count the step as failed and go on."""
    settings = bookgen_settings(self.app)
    error = _failure_message(self.app, failed_task_id)
    logger.warning("job %s: step %s failed: %s", job_id, step, error)
    store.finish_step(settings, job_id, step, error=error, status=plan.status_line)
    advance(self.app, settings, job_id)


@bookgen_task("job.sweep")
def sweep(self: Any) -> dict[str, int]:
    """Run by beat on the monitoring queue: publish the steps whose sender died before it could."""
    return outbox.sweep(self.app, bookgen_settings(self.app))


def _failure_message(celery_app: Celery, task_id: str) -> str:
    try:
        exc = celery_app.AsyncResult(task_id).result
    except Exception:  # the message is a courtesy; never lose the count over it
        exc = None
    if isinstance(exc, BaseException):
        return f"{type(exc).__name__}: {exc}"
    return "failed after its retries (see `bookgen dlq list`)"


__all__ = ["advance", "advance_task", "start", "step_done", "step_failed", "sweep"]
