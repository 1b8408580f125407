"""The admission check of book jobs: asked by every worker just before a BookGen task starts.

A task belongs to a job when its link callback is `bookgen.job.step_done(job_id, step)` (callbacks
survive retries, unlike custom headers). For such a task:
- the job is over (cancelled, failed, ...) or the step is already counted: drop it. This covers
  workers that never saw the revoke broadcast, e.g. started by the autoscaler after the cancel
  (workers run --without-mingle, so revoked ids are not shared with newcomers);
- the job is PAUSED and the task is a chapter: put the chapter back on the job's `held` list and
  drop this copy; resume sends it again first. So pause stops every chapter that has not started,
  queued ones included, without a task spinning or holding a slot while it waits;
- otherwise it runs.
If Redis cannot answer, the task runs (fail open): the job's callbacks still count it correctly.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import redis
from celery import Task
from celery.exceptions import Ignore

from ..app import bookgen_settings
from ..tasks.base import ADMISSION_CHECKS
from . import store

logger = logging.getLogger(__name__)


def job_step(request: Any) -> tuple[str, str] | None:
    """(job id, step) from the task's link callback, or None for a task outside any job."""
    for callback in getattr(request, "callbacks", None) or ():
        if isinstance(callback, Mapping) and callback.get("task") == store.STEP_DONE_TASK:
            args = list(callback.get("args") or ())
            if len(args) >= 2:
                return str(args[0]), str(args[1])
    return None


def admit(task: Task) -> None:
    found = job_step(task.request)
    if found is None:
        return
    job_id, step = found
    try:
        decision = store.admit_step(bookgen_settings(task.app), job_id, step, task.request.id)
    except store.JobNotFound:
        decision = store.DROP
    except (redis.exceptions.RedisError, OSError) as exc:
        logger.warning("job %s: cannot check %s before it starts (%s); running it", job_id, step, exc)
        return
    if decision == store.RUN:
        return
    logger.info("job %s: %s %s (%s)", job_id, "holding" if decision == store.HOLD else "dropping", step,
                task.request.id)
    raise Ignore(f"job {job_id}: {decision} {step}")


if admit not in ADMISSION_CHECKS:
    ADMISSION_CHECKS.append(admit)
