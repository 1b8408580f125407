"""BookGen's queue topology: six queues, routing by task name, four worker pools, priorities.

This module is the single source of these facts: the Celery app, the operator's default spec, the
local runtime and the metrics all read them from here.
"""

from __future__ import annotations

from bisect import bisect
from collections.abc import Sequence
from dataclasses import dataclass

HIGH_PRIORITY = "high_priority"
CONTENT_GENERATION = "content_generation"
VALIDATION = "validation"
EXPORT = "export"
MONITORING = "monitoring"
DEFAULT = "default"

QUEUES: tuple[str, ...] = (HIGH_PRIORITY, CONTENT_GENERATION, VALIDATION, EXPORT, MONITORING, DEFAULT)

#: Where the dead-letter entries live (a Redis hash: task id -> JSON record; see deadletter.py).
DEAD_LETTER_KEY = "failed_tasks"

#: Public priorities: 0..10, 10 is the most urgent (BookGen's public API).
MIN_PRIORITY = 0
MAX_PRIORITY = 10
DEFAULT_PRIORITY = 5

TASK_PREFIX = "bookgen."

GENERATION_TASKS = (
    "generate_chapter",
    "generate_introduction",
    "generate_conclusion",
    "regenerate_chapter",
    "batch_generate_chapters",
)
VALIDATION_TASKS = (
    "validate_chapter_length",
    "validate_sources",
    "validate_content_quality",
    "validate_complete_biography",
)
EXPORT_TASKS = ("export_to_markdown", "export_to_word", "export_to_pdf", "export_all_formats")
MONITORING_TASKS = (
    "health_check",
    "get_queue_stats",
    "get_worker_stats",
    "cleanup_expired_results",
    "process_dead_letter_queue",
)

#: task type -> (queue, short task names)
TASK_TYPES: dict[str, tuple[str, tuple[str, ...]]] = {
    "generation": (CONTENT_GENERATION, GENERATION_TASKS),
    "validation": (VALIDATION, VALIDATION_TASKS),
    "export": (EXPORT, EXPORT_TASKS),
    "monitoring": (MONITORING, MONITORING_TASKS),
}


def task_name(short: str) -> str:
    return f"{TASK_PREFIX}{short}"


#: Book-job coordination tasks ("bookgen.job.<step>") are short and must not wait behind a backlog of
#: chapters, so they go to high_priority, which the content pool consumes.
JOB_TASK_PREFIX = f"{TASK_PREFIX}job."
#: Except the jobs' outbox sweep: housekeeping that beat runs, so it goes with the monitoring tasks.
JOB_SWEEP_TASK = f"{JOB_TASK_PREFIX}sweep"


#: The transport priority of every coordination task (the most urgent): a job's progress must never
#: wait behind its own chapters, whatever the job's priority.
COORDINATION_TRANSPORT_PRIORITY = 0


def is_coordination_task(name: str) -> bool:
    return name.startswith(JOB_TASK_PREFIX) and name != JOB_SWEEP_TASK


def consumption_order(queues: Sequence[str]) -> list[str]:
    """The order a worker polls its queues in: high_priority first, then as given.

    kombu's Redis transport serves one priority level across all of a worker's queues in this order,
    so a coordination queue listed after a content queue (BookGen's original `-Q content_generation,
    high_priority`) would wait behind the whole chapter backlog.
    """
    return sorted(queues, key=lambda name: name != HIGH_PRIORITY)


def task_type_of(name: str) -> str:
    if name.startswith(JOB_TASK_PREFIX):
        return "job"
    short = name.removeprefix(TASK_PREFIX)
    for task_type, (_queue, names) in TASK_TYPES.items():
        if short in names:
            return task_type
    return "default"


def queue_for_task(name: str) -> str:
    """The queue a task is routed to by name; unknown names fall back to `default`."""
    if name == JOB_SWEEP_TASK:
        return MONITORING
    task_type = task_type_of(name)
    if task_type == "job":
        return HIGH_PRIORITY
    return TASK_TYPES[task_type][0] if task_type in TASK_TYPES else DEFAULT


def task_routes() -> dict[str, dict[str, str]]:
    routes = {task_name(short): {"queue": queue} for queue, names in TASK_TYPES.values() for short in names}
    routes[f"{JOB_TASK_PREFIX}*"] = {"queue": HIGH_PRIORITY}
    routes[JOB_SWEEP_TASK] = {"queue": MONITORING}  # Celery tries exact names before patterns
    return routes


ALL_TASKS: tuple[str, ...] = tuple(task_name(s) for _q, names in TASK_TYPES.values() for s in names)


class PriorityError(ValueError):
    pass


def transport_priority(priority: int) -> int:
    """Map the public priority (10 = most urgent) onto kombu's Redis order (0 = served first).

    kombu's Redis transport keeps one list per priority step and pops the list of the lowest
    number first; its priorities stop at 9, so the reversed public scale 10..0 becomes 0..9 with the
    two least urgent levels, 1 and 0, sharing 9: the one tie left with the default steps (0..9).
    Coarser BOOKGEN_PRIORITY_STEPS merge neighbouring levels further (kombu rounds down to a step).
    """
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise PriorityError(f"priority must be a whole number from 0 to 10 (got {priority!r})")
    if not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        raise PriorityError(f"priority must be from 0 to 10, 10 being the most urgent (got {priority})")
    return min(MAX_PRIORITY - priority, 9)


def priority_step(transport: int, steps: tuple[int, ...]) -> int:
    """The priority list a transport priority lands in (kombu's own rounding down to a step)."""
    return steps[max(bisect(steps, transport) - 1, 0)]


def priority_list_keys(queue: str, steps: tuple[int, ...], separator: str, prefix: str = "") -> list[str]:
    """Every Redis list kombu uses for `queue`, highest priority first."""
    return [f"{prefix}{queue}{separator}{step}" if step else f"{prefix}{queue}" for step in steps]


@dataclass(frozen=True)
class PoolDefaults:
    name: str
    queues: tuple[str, ...]
    concurrency: int


#: BookGen's original four worker pools.
DEFAULT_POOLS: tuple[PoolDefaults, ...] = (
    PoolDefaults("content", (CONTENT_GENERATION, HIGH_PRIORITY), 2),
    PoolDefaults("validation", (VALIDATION,), 2),
    PoolDefaults("export", (EXPORT,), 1),
    PoolDefaults("monitoring", (MONITORING,), 1),
)
