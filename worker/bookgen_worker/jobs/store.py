"""Book jobs in Redis: the job hash, the index of jobs, and every change to them, atomically.

Keys (all behind the configured global key prefix):
- `bookgen:job:<id>`          hash: state, current, total, status, inputs, counters, outputs, errors
- `bookgen:job:<id>:results`  hash: step key ("chapter:3", "introduction", "export:pdf", ...) -> JSON
                              {"ok": bool, "result": ..., "error": str}; a step is counted once only
- `bookgen:job:<id>:tasks`    hash: step key -> Celery task id of the steps queued or running (what
                              a cancel revokes)
- `bookgen:job:<id>:outbox`   hash: task id -> StepMessage JSON of a step (or of the start / advance
                              that submit / resume send) registered but maybe not published yet
                              (jobs/outbox.py sends it again if its sender died)
- `bookgen:jobs`              sorted set of job ids, score = created_at

Every change reads the record under WATCH, decides with a pure function, and writes in MULTI; a
concurrent writer makes the transaction retry (redis-py's `transaction`). So two chapters finishing
at the same moment both count, a finishing chapter never races a cancel into a wrong state, and a
terminal state is never left (states.check_transition is asked before every state change).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ..config import Settings
from ..errors import BookGenError, RedisFull
from ..queues import DEFAULT_PRIORITY
from ..redis_client import get_redis, hash_fields, is_redis_full, prefixed, text
from .records import (
    CHAPTER_TASK,
    DEFAULT_PARALLEL,
    DEFAULT_TARGET_WORDS,
    STAGE_CHAPTERS,
    JobRecord,
    StepMessage,
    total_steps,
    validate_inputs,
)
from .states import PAUSABLE, InvalidTransition, JobState, check_transition, is_terminal, resume_target

if TYPE_CHECKING:
    from celery import Celery
    from redis.client import Pipeline

JOBS_INDEX = "bookgen:jobs"
#: How long a finished job (and its chapter texts) stays readable; its outputs are files and stay.
JOB_RETENTION_SECONDS = 7 * 86400
START_TASK = "bookgen.job.start"
ADVANCE_TASK = "bookgen.job.advance"
STEP_DONE_TASK = "bookgen.job.step_done"
STEP_FAILED_TASK = "bookgen.job.step_failed"

# What the admission check (jobs/gate.py) answers for a job's task about to start.
RUN, HOLD, DROP = "run", "hold", "drop"


class JobNotFound(BookGenError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job with id {job_id!r} (see `bookgen jobs`)")
        self.job_id = job_id


def job_key(settings: Settings, job_id: str) -> str:
    return prefixed(settings, f"bookgen:job:{job_id}")


def results_key(settings: Settings, job_id: str) -> str:
    return prefixed(settings, f"bookgen:job:{job_id}:results")


def tasks_key(settings: Settings, job_id: str) -> str:
    return prefixed(settings, f"bookgen:job:{job_id}:tasks")


def outbox_key(settings: Settings, job_id: str) -> str:
    return prefixed(settings, f"bookgen:job:{job_id}:outbox")


def index_key(settings: Settings) -> str:
    return prefixed(settings, JOBS_INDEX)


@dataclass
class Change:
    """What a decision wants written: a new record (or None) and extra writes, plus a return value."""

    record: JobRecord | None = None
    writes: list[Callable[[Pipeline], Any]] = field(default_factory=list)
    value: Any = None


def _mutate(settings: Settings, job_id: str, decide: Callable[[JobRecord, Pipeline], Change]) -> Any:
    client = get_redis(settings)
    key = job_key(settings, job_id)

    def body(pipe: Pipeline) -> Any:
        raw = pipe.hgetall(key)
        if not raw:
            raise JobNotFound(job_id)
        before = JobRecord.from_hash(job_id, raw)
        change = decide(before, pipe)
        pipe.multi()
        if change.record is not None and change.record != before:
            pipe.hset(key, mapping=hash_fields(replace(change.record, updated_at=time.time()).to_hash()))
            if is_terminal(change.record.state) and not is_terminal(before.state):
                for finished in (*watched, outbox_key(settings, job_id)):  # a finished job ages out
                    pipe.expire(finished, JOB_RETENTION_SECONDS)
        for write in change.writes:
            write(pipe)
        return change.value

    watched = (key, results_key(settings, job_id), tasks_key(settings, job_id))
    return client.transaction(body, *watched, value_from_callable=True)


# --- reading -----------------------------------------------------------------------------------


def get_job(settings: Settings, job_id: str) -> JobRecord:
    raw = get_redis(settings).hgetall(job_key(settings, job_id))
    if not raw:
        raise JobNotFound(job_id)
    return JobRecord.from_hash(job_id, raw)


def list_jobs(settings: Settings, limit: int = 50) -> list[JobRecord]:
    """The newest jobs first."""
    client = get_redis(settings)
    ids = [text(i) for i in client.zrevrange(index_key(settings), 0, max(limit, 1) - 1)]
    pipe = client.pipeline(transaction=False)
    for job_id in ids:
        pipe.hgetall(job_key(settings, job_id))
    return [JobRecord.from_hash(job_id, raw) for job_id, raw in zip(ids, pipe.execute(), strict=True) if raw]


def step_results(settings: Settings, job_id: str) -> dict[str, dict[str, Any]]:
    raw = get_redis(settings).hgetall(results_key(settings, job_id))
    return {text(key): json.loads(value) for key, value in raw.items()}


def queued_tasks(settings: Settings, job_id: str) -> dict[str, str]:
    raw = get_redis(settings).hgetall(tasks_key(settings, job_id))
    return {text(key): text(value) for key, value in raw.items()}


# --- the user's actions -------------------------------------------------------------------------


def _celery(celery_app: Celery | None) -> Celery:
    if celery_app is not None:
        return celery_app
    from ..app import app

    return app


def _kick(job_id: str, step: str, priority: int) -> StepMessage:
    """The message of the job's own start or advance, registered under `step` like any step."""
    task = START_TASK if step == "start" else ADVANCE_TASK
    return StepMessage(step, task, (job_id,), uuid.uuid4().hex, priority, time.time(), callbacks=False)


def _publish(celery_app: Celery | None, settings: Settings, job_id: str, message: StepMessage) -> None:
    # Imported on use: the outbox imports this module at its top, so a top-level import would be circular.
    from . import outbox

    outbox.publish(_celery(celery_app), settings, job_id, message)


def submit_job(
    settings: Settings,
    subject: str,
    chapters: int,
    target_words: int = DEFAULT_TARGET_WORDS,
    formats: str | Iterable[str] | None = None,
    *,
    priority: int = DEFAULT_PRIORITY,
    parallel: int = DEFAULT_PARALLEL,
    celery_app: Celery | None = None,
) -> str:
    """Check the request, store the job as PENDING and send its first step; return the job id.
    The start goes into the outbox with the job, so it is sent even if this client dies first."""
    inputs = validate_inputs(subject, chapters, target_words, formats, priority, parallel)
    job_id = uuid.uuid4().hex
    now = time.time()
    record = JobRecord(
        id=job_id, state=JobState.PENDING, current=0, total=total_steps(inputs.chapters, inputs.formats),
        status="Waiting for a worker", subject=inputs.subject, chapters=inputs.chapters,
        target_words=inputs.target_words, formats=inputs.formats, priority=inputs.priority,
        parallel=inputs.parallel, created_at=now, updated_at=now,
    )
    start = _kick(job_id, "start", inputs.priority)
    pipe = get_redis(settings).pipeline(transaction=True)
    pipe.hset(job_key(settings, job_id), mapping=hash_fields(record.to_hash()))
    _register(pipe, settings, job_id, [start])
    pipe.zadd(index_key(settings), {job_id: now})
    pipe.zremrangebyscore(index_key(settings), "-inf", now - 2 * JOB_RETENTION_SECONDS)  # long-expired ids
    try:
        pipe.execute()  # MULTI/EXEC: a Redis at maxmemory refuses all of it, so nothing is half-written
    except Exception as exc:
        if is_redis_full(exc):
            raise RedisFull("the new job") from exc
        raise
    try:
        _publish(celery_app, settings, job_id, start)
    except Exception as exc:
        if not is_redis_full(exc):
            raise  # e.g. a lost connection: the job stays, and beat's outbox sweep sends its start
        _forget(settings, job_id)
        raise RedisFull("the new job's first task") from exc
    return job_id


def _forget(settings: Settings, job_id: str) -> None:
    """Remove a job whose start Redis refused, so the error the caller gets is the whole truth: no job.
    Deletes only, one command each and outside MULTI: a full Redis refuses every command queued in a
    transaction, but serves deletes (they free memory). A job half-removed by a client dying here is
    a PENDING job whose start the outbox sweep sends later, as for any client that died after submit."""
    client = get_redis(settings)
    client.zrem(index_key(settings), job_id)
    client.delete(outbox_key(settings, job_id), tasks_key(settings, job_id), results_key(settings, job_id),
                  job_key(settings, job_id))


def pause_job(settings: Settings, job_id: str) -> JobRecord:
    """Hold the job: nothing new is sent, and queued chapters are held as they reach a worker
    (jobs/gate.py). Chapters already running finish and are counted."""

    def decide(record: JobRecord, _pipe: Pipeline) -> Change:
        check_transition(record.state, JobState.PAUSED)
        paused = replace(record, state=JobState.PAUSED, paused_from=str(record.state),
                         status=f"Paused ({record.current}/{record.total} done)")
        return Change(paused, value=paused)

    return _mutate(settings, job_id, decide)  # type: ignore[no-any-return]


def resume_job(settings: Settings, job_id: str, *, celery_app: Celery | None = None) -> JobRecord:
    """Continue a paused job where it stopped (a job paused before it ran is validated again); its
    start or advance goes through the outbox, like submit_job's start."""

    def decide(record: JobRecord, _pipe: Pipeline) -> Change:
        target = resume_target(record.paused_from)
        check_transition(record.state, target)
        kick = _kick(job_id, "start" if target == JobState.PENDING else "advance", record.priority)
        resumed = replace(record, state=target, paused_from="", status="Resumed")
        return Change(resumed, [lambda p: _register(p, settings, job_id, [kick])], (resumed, kick))

    resumed, kick = _mutate(settings, job_id, decide)
    _publish(celery_app, settings, job_id, kick)
    return resumed  # type: ignore[no-any-return]


def cancel_job(settings: Settings, job_id: str, *, celery_app: Celery | None = None) -> tuple[JobRecord, list[str]]:
    """End the job as CANCELLED and revoke every step it still has queued; return the revoked ids.

    The state changes first, in the same transaction that reads the task ids, so a step sent
    concurrently is either in that list or is never sent (senders check the state under WATCH).
    """

    def decide(record: JobRecord, pipe: Pipeline) -> Change:
        check_transition(record.state, JobState.CANCELLED)
        ids = [text(value) for value in pipe.hvals(tasks_key(settings, job_id))]
        cancelled = replace(record, state=JobState.CANCELLED, in_flight=0,
                            status=f"Cancelled at {record.current}/{record.total}")
        return Change(cancelled, value=(cancelled, ids))

    cancelled, ids = _mutate(settings, job_id, decide)
    if ids:
        _celery(celery_app).control.revoke(ids)
    return cancelled, ids


# --- steps of the orchestration -----------------------------------------------------------------


def try_transition(settings: Settings, job_id: str, expected: Iterable[JobState], target: JobState,
                   **fields: Any) -> JobRecord | None:
    """Move to `target` only if the job is in one of `expected` now; None if it is not (paused, cancelled)."""
    expected = frozenset(expected)

    def decide(record: JobRecord, _pipe: Pipeline) -> Change:
        if record.state not in expected:
            return Change()
        check_transition(record.state, target)
        moved = replace(record, state=target, **fields)
        return Change(moved, value=moved)

    return _mutate(settings, job_id, decide)  # type: ignore[no-any-return]


def claim_chapters(settings: Settings, job_id: str) -> list[StepMessage]:
    """Reserve the next chapters to send, up to the job's in-flight limit; return their messages.

    Chapters a pause held back go first. Only a RUNNING job in its chapter stage gets any; the ids
    are stored in the same transaction, so a cancel that follows sees (and revokes) them, and so are
    the messages, so the sweep can send them if the caller dies before it does (jobs/outbox.py).
    """

    def decide(record: JobRecord, _pipe: Pipeline) -> Change:
        if record.state != JobState.RUNNING or record.stage != STAGE_CHAPTERS:
            return Change(value=[])
        room = record.parallel - record.in_flight
        again = record.held[: max(room, 0)]
        fresh = max(min(room - len(again), record.chapters - record.dispatched), 0)
        numbers = [*again, *range(record.dispatched + 1, record.dispatched + fresh + 1)]
        if not numbers:
            return Change(value=[])
        chapters = {f"chapter:{n}": (CHAPTER_TASK, (record.subject, n, None, record.target_words)) for n in numbers}
        messages = _messages(record, chapters)
        updated = replace(record, held=record.held[len(again):], dispatched=record.dispatched + fresh,
                          in_flight=record.in_flight + len(numbers))
        return Change(updated, [lambda p: _register(p, settings, job_id, messages)], messages)

    return _mutate(settings, job_id, decide)  # type: ignore[no-any-return]


def admit_step(settings: Settings, job_id: str, step: str, task_id: str) -> str:
    """Decide, as a job's task is about to start, whether it runs (RUN), waits for a resume (HOLD:
    a chapter of a paused job goes back to `held`, its slot is freed) or is dropped (DROP: the job
    is over, or this is a stale copy of a step that was done or sent again under another id)."""

    def decide(record: JobRecord, pipe: Pipeline) -> Change:
        if is_terminal(record.state) or pipe.hexists(results_key(settings, job_id), step):
            return Change(value=DROP)
        registered = pipe.hget(tasks_key(settings, job_id), step)
        if registered is None or text(registered) != task_id:
            return Change(value=DROP)
        if record.state != JobState.PAUSED or not step.startswith("chapter:"):
            return Change(value=RUN)
        number = int(step.split(":", 1)[1])
        held = replace(record, held=tuple(sorted({*record.held, number})), in_flight=max(record.in_flight - 1, 0))
        return Change(held, [lambda p: p.hdel(tasks_key(settings, job_id), step)], HOLD)

    return _mutate(settings, job_id, decide)  # type: ignore[no-any-return]


def enter_stage(settings: Settings, job_id: str, from_stage: str, to_stage: str,
                steps: Mapping[str, tuple[str, tuple[Any, ...]]], status: str) -> list[StepMessage] | None:
    """Move a RUNNING job from one stage to the next exactly once; return the messages of its steps
    (`steps`: step key -> task name and arguments), registered like claim_chapters registers them."""

    def decide(record: JobRecord, _pipe: Pipeline) -> Change:
        if record.state != JobState.RUNNING or record.stage != from_stage:
            return Change()
        messages = _messages(record, steps)
        writes = [lambda p: _register(p, settings, job_id, messages)] if messages else []
        return Change(replace(record, stage=to_stage, status=status), writes, messages)

    return _mutate(settings, job_id, decide)  # type: ignore[no-any-return]


def _messages(record: JobRecord, steps: Mapping[str, tuple[str, tuple[Any, ...]]]) -> list[StepMessage]:
    now = time.time()
    return [StepMessage(step, task, args, uuid.uuid4().hex, record.priority, now)
            for step, (task, args) in steps.items()]


def _register(pipe: Pipeline, settings: Settings, job_id: str, messages: list[StepMessage]) -> None:
    pipe.hset(tasks_key(settings, job_id), mapping={message.step: message.task_id for message in messages})
    pipe.hset(outbox_key(settings, job_id), mapping={message.task_id: message.to_json() for message in messages})


def finish_step(settings: Settings, job_id: str, step: str, *, result: Any = None, error: str | None = None,
                status: Callable[[JobRecord], str] | None = None) -> JobRecord | None:
    """Count a step as done (or failed) once; None if it was already counted or the job is over.

    Steps finishing while the job is PAUSED still count: they were sent before the pause.
    """
    is_chapter = step.startswith("chapter:")
    number = int(step.split(":", 1)[1]) if is_chapter else None

    def decide(record: JobRecord, pipe: Pipeline) -> Change:
        if is_terminal(record.state) or pipe.hexists(results_key(settings, job_id), step):
            return Change()
        # A held chapter freed its slot already; this is a second copy (same task id) that ran while
        # the other was held. It must not free a slot again, nor be sent again on resume.
        held = number in record.held
        updated = replace(
            record,
            current=min(record.current + 1, record.total),
            in_flight=max(record.in_flight - 1, 0) if is_chapter and not held else record.in_flight,
            held=tuple(n for n in record.held if n != number),
            chapters_done=record.chapters_done + (1 if is_chapter and error is None else 0),
            chapters_failed=record.chapters_failed + (1 if is_chapter and error is not None else 0),
            errors=record.errors if error is None else (*record.errors, f"{step}: {error}"),
            retrying={k: v for k, v in record.retrying.items() if k != step},
        )
        if status is not None:
            updated = replace(updated, status=status(updated))
        payload = json.dumps({"ok": error is None, "result": result, "error": error})
        writes = [
            lambda p: p.hset(results_key(settings, job_id), step, payload),
            lambda p: p.hdel(tasks_key(settings, job_id), step),
        ]
        return Change(updated, writes, updated)

    return _mutate(settings, job_id, decide)  # type: ignore[no-any-return]


def update(settings: Settings, job_id: str, **fields: Any) -> JobRecord | None:
    """Change non-state fields (status, current, ...) of a job that is not over yet."""

    def decide(record: JobRecord, _pipe: Pipeline) -> Change:
        if is_terminal(record.state):
            return Change()
        updated = replace(record, **fields)
        return Change(updated, value=updated)

    return _mutate(settings, job_id, decide)  # type: ignore[no-any-return]


def note_retry(settings: Settings, job_id: str, step: str, problem: str) -> JobRecord | None:
    """Record what went wrong with a step that will be tried again (or that just ran out of tries), and
    show it in the status line; counting the step (finish_step) clears it."""
    from .plan import status_line  # plan imports records only; imported here to keep this module's top light

    def decide(record: JobRecord, pipe: Pipeline) -> Change:
        if is_terminal(record.state) or pipe.hexists(results_key(settings, job_id), step):
            return Change()
        noted = replace(record, retrying={**record.retrying, step: problem})
        noted = replace(noted, status=status_line(noted))
        return Change(noted, value=noted)

    return _mutate(settings, job_id, decide)  # type: ignore[no-any-return]


def finish_job(settings: Settings, job_id: str, state: JobState, status: str,
               outputs: Mapping[str, str] | None = None, errors: Iterable[str] = (), *,
               files: Mapping[str, Mapping[str, Any]] | None = None) -> JobRecord | None:
    """End a RUNNING job in a terminal state (None if it is paused or already over)."""

    def decide(record: JobRecord, pipe: Pipeline) -> Change:
        if record.state != JobState.RUNNING:
            return Change()
        check_transition(record.state, state)
        done = replace(record, state=state, status=status, stage="done", in_flight=0,
                       outputs=dict(outputs or record.outputs), files=dict(files or record.files), retrying={},
                       errors=(*record.errors, *errors))
        return Change(done, [lambda p: p.delete(tasks_key(settings, job_id), outbox_key(settings, job_id))], done)

    return _mutate(settings, job_id, decide)  # type: ignore[no-any-return]


__all__ = [
    "PAUSABLE", "InvalidTransition", "JobNotFound", "JobRecord", "JobState", "cancel_job", "claim_chapters",
    "enter_stage", "finish_job", "finish_step", "get_job", "list_jobs", "note_retry", "pause_job", "resume_job",
    "step_results", "submit_job", "try_transition", "update",
]
