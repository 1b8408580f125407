"""The life cycle of a book job, as pure data and pure functions (no I/O).

    PENDING -> VALIDATING -> RUNNING -> COMPLETED | COMPLETED_WITH_ERRORS | FAILED
    PENDING, VALIDATING, RUNNING -> PAUSED (user) ; PAUSED -> PENDING | RUNNING (resume)
    any non-terminal state -> CANCELLED (user)

A job paused before it was RUNNING resumes to PENDING, so its inputs are validated again before
any chapter is written; a job paused while RUNNING resumes to RUNNING and goes on where it stopped.
A terminal state is never left: every writer of the job hash asks `check_transition` first.
"""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    PENDING = "PENDING"
    VALIDATING = "VALIDATING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    COMPLETED = "COMPLETED"
    COMPLETED_WITH_ERRORS = "COMPLETED_WITH_ERRORS"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


TERMINAL: frozenset[JobState] = frozenset(
    {JobState.COMPLETED, JobState.COMPLETED_WITH_ERRORS, JobState.FAILED, JobState.CANCELLED}
)

#: States a user may pause; PAUSED remembers which one it came from (see `resume_target`).
PAUSABLE: frozenset[JobState] = frozenset({JobState.PENDING, JobState.VALIDATING, JobState.RUNNING})

_ALLOWED: dict[JobState, frozenset[JobState]] = {
    JobState.PENDING: frozenset({JobState.VALIDATING, JobState.PAUSED, JobState.CANCELLED, JobState.FAILED}),
    JobState.VALIDATING: frozenset({JobState.RUNNING, JobState.PAUSED, JobState.CANCELLED, JobState.FAILED}),
    JobState.RUNNING: frozenset(
        {
            JobState.COMPLETED,
            JobState.COMPLETED_WITH_ERRORS,
            JobState.FAILED,
            JobState.PAUSED,
            JobState.CANCELLED,
        }
    ),
    JobState.PAUSED: frozenset({JobState.PENDING, JobState.RUNNING, JobState.CANCELLED}),
}


class InvalidTransition(ValueError):
    """A state change the life cycle does not allow; the message is meant for a user."""


def is_terminal(state: JobState | str) -> bool:
    return JobState(state) in TERMINAL


def allowed(current: JobState | str, target: JobState | str) -> bool:
    return JobState(target) in _ALLOWED.get(JobState(current), frozenset())


def check_transition(current: JobState | str, target: JobState | str) -> None:
    """Raise InvalidTransition unless `current -> target` is part of the life cycle."""
    current, target = JobState(current), JobState(target)
    if allowed(current, target):
        return
    if current in TERMINAL:
        raise InvalidTransition(f"the job is already {current} and cannot become {target}")
    if target == JobState.PAUSED:
        raise InvalidTransition(f"only a pending, validating or running job can be paused (this one is {current})")
    if current != JobState.PAUSED and target in (JobState.PENDING, JobState.RUNNING):
        raise InvalidTransition(f"the job is {current}, not paused; there is nothing to resume")
    raise InvalidTransition(f"a {current} job cannot become {target}")


def resume_target(paused_from: JobState | str | None) -> JobState:
    """Where a resumed job goes: back to RUNNING if it was running, else to PENDING (validate again)."""
    return JobState.RUNNING if paused_from == JobState.RUNNING else JobState.PENDING
