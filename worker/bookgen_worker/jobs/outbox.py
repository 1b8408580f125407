"""The outbox of book jobs: publishing a step's message, and the sweep that publishes it again when
its sender died first.

A step is registered in Redis before its message is published, so that a cancel always sees the
task id it must revoke. A worker killed between the two (SIGKILL, OOM, a lost node) would leave the
step registered and counted in flight with no message, and nothing level-based sends it again:
`claim_chapters` sees the chapter in flight, `enter_stage` has already moved the stage. So the
message itself is written to the job's outbox in that same transaction (store.claim_chapters,
store.enter_stage), removed once published, and beat's sweep (`bookgen.job.sweep`, every
BOOKGEN_JOB_SWEEP_INTERVAL s) publishes what was kept there longer than BOOKGEN_JOB_SWEEP_AGE s.
The client's own messages go the same way: `job.start`, recorded with the new job (store.submit_job)
or with a resume to PENDING, and `job.advance`, recorded with a resume to RUNNING (store.resume_job);
else a client killed after its transaction would leave the job PENDING, or RUNNING, with nothing sent.

An entry is done once its step's registration is gone or names another task id: counting a step
(store.finish_step), holding a chapter (store.admit_step) and the start of `job.start` or
`job.advance` delete it, and a resume re-registers start / advance under a new id. Not the results
hash: a job paused while validating has "start" counted, yet the start its resume registers must go.
A late copy of `job.start` (or `job.advance`) may delete a newer registration of its step; it then
does that step's work itself, unless the job was paused since, and then the next resume registers
another. Per job state, the sweep, for entries older than BOOKGEN_JOB_SWEEP_AGE:
- RUNNING: drops the done ones and sends the others again.
- PENDING: drops the done ones and sends its `start` again (nothing else is due before validation).
- VALIDATING: drops the done ones and sends nothing: its `start` is running.
- PAUSED: keeps every entry until the job runs again: pause means nothing new is sent, and a
  chapter sent now would only be held at its start (jobs/gate.py) while an introduction, a
  validation or an export would run in the middle of the pause.
- finished, cancelled or gone: deletes every entry.

Publishing twice is harmless, because the sweep reuses the task id and callbacks. For a step: a
copy that starts after the step was counted, or under an id that is no longer the step's, is
dropped by store.admit_step; two copies that both run are counted once by store.finish_step, which
skips a step already in the results hash, read under WATCH. A second `job.start` finds the job no
longer PENDING and does nothing (try_transition); a second `job.advance` sends only what is due and
not yet registered (claim_chapters, enter_stage and finish_job each change the job once).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from ..config import Settings
from ..queues import COORDINATION_TRANSPORT_PRIORITY, is_coordination_task, transport_priority
from ..redis_client import get_redis, text
from . import store
from .records import StepMessage
from .states import JobState

if TYPE_CHECKING:
    from celery import Celery

logger = logging.getLogger(__name__)


def send_step(celery_app: Celery, name: str, args: tuple[Any, ...], priority: int, task_id: str,
              **options: Any) -> None:
    """Send a task by name with the public priority scale and a task id chosen (and stored) beforehand.
    Coordination tasks always go first (see queues.COORDINATION_TRANSPORT_PRIORITY)."""
    transport = COORDINATION_TRANSPORT_PRIORITY if is_coordination_task(name) else transport_priority(priority)
    # Nobody reads these results from the backend: a step's result reaches its callback as an argument
    # and is kept in the job's own hash. Failures are still stored (task_store_errors_even_if_ignored).
    celery_app.signature(name, args=args, task_id=task_id, priority=transport, ignore_result=True,
                         **options).apply_async()


def publish(celery_app: Celery, settings: Settings, job_id: str, message: StepMessage) -> None:
    """Send a message (a step with the job's callbacks, a start or an advance without), then forget its
    outbox entry."""
    priority = COORDINATION_TRANSPORT_PRIORITY  # the callbacks are coordination tasks
    callbacks = {
        "link": celery_app.signature(store.STEP_DONE_TASK, args=(job_id, message.step), priority=priority,
                                     ignore_result=True),
        "link_error": celery_app.signature(store.STEP_FAILED_TASK, args=(job_id, message.step), priority=priority,
                                           ignore_result=True),
    } if message.callbacks else {}
    send_step(celery_app, message.task, message.args, message.priority, message.task_id, **callbacks)
    get_redis(settings).hdel(store.outbox_key(settings, job_id), message.task_id)


def entries(settings: Settings, job_id: str) -> list[StepMessage]:
    raw = get_redis(settings).hvals(store.outbox_key(settings, job_id))
    return sorted((StepMessage.from_json(value) for value in raw), key=lambda message: (message.at, message.step))


def sweep(celery_app: Celery, settings: Settings, now: float | None = None) -> dict[str, int]:
    """Publish again the overdue messages their jobs' states allow; drop the done ones. Returns the counts."""
    cutoff = (time.time() if now is None else now) - settings.job_sweep_age
    totals = {"resent": 0, "dropped": 0}
    for job_id in _jobs_with_entries(settings):
        for name, count in _sweep_job(celery_app, settings, job_id, cutoff).items():
            totals[name] += count
    return totals


def _jobs_with_entries(settings: Settings) -> list[str]:
    client = get_redis(settings)
    ids = [text(job_id) for job_id in client.zrange(store.index_key(settings), 0, -1)]
    pipe = client.pipeline(transaction=False)
    for job_id in ids:
        pipe.exists(store.outbox_key(settings, job_id))
    return [job_id for job_id, found in zip(ids, pipe.execute(), strict=True) if found]


def _sweep_job(celery_app: Celery, settings: Settings, job_id: str, cutoff: float) -> dict[str, int]:
    key = store.outbox_key(settings, job_id)
    try:
        job = store.get_job(settings, job_id)
    except store.JobNotFound:
        job = None
    if job is None or job.terminal:
        pipe = get_redis(settings).pipeline(transaction=True)
        pipe.hlen(key)
        pipe.delete(key)
        return {"dropped": int(pipe.execute()[0])}
    if job.state == JobState.PAUSED:
        return {}
    return _resend_overdue(celery_app, settings, job_id, job.state, cutoff)


def _sendable(state: JobState, step: str) -> bool:
    return state == JobState.RUNNING or (state == JobState.PENDING and step == "start")


def _resend_overdue(celery_app: Celery, settings: Settings, job_id: str, state: JobState,
                    cutoff: float) -> dict[str, int]:
    # The entries first, then what became of their steps: an entry seen here had its step
    # registered in the same transaction, so a registration missing below really is gone.
    overdue = [message for message in entries(settings, job_id) if message.at <= cutoff]
    if not overdue:
        return {}
    client = get_redis(settings)
    registered = {text(step): text(task_id)
                  for step, task_id in client.hgetall(store.tasks_key(settings, job_id)).items()}
    counts = {"resent": 0, "dropped": 0}
    for message in overdue:
        if registered.get(message.step) != message.task_id:
            client.hdel(store.outbox_key(settings, job_id), message.task_id)
            counts["dropped"] += 1
            continue
        if not _sendable(state, message.step):
            continue
        logger.warning("job %s: sending %s (%s) again: registered %.0fs ago, never published",
                       job_id, message.step, message.task_id, time.time() - message.at)
        publish(celery_app, settings, job_id, message)
        counts["resent"] += 1
    return counts
