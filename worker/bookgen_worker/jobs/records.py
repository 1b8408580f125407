"""What a book job is, as data: its inputs (checked here, purely), its record, its progress maths.

The job hash in Redis holds flat strings; `JobRecord.from_hash` / `to_hash` are the only places that
know the encoding, so the store, the orchestration tasks and the CLI agree on it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidInput
from ..queues import DEFAULT_PRIORITY, MAX_PRIORITY, MIN_PRIORITY
from .states import JobState

#: Accepted spellings of an export format -> the name the export tasks report.
FORMAT_ALIASES: dict[str, str] = {
    "md": "markdown",
    "markdown": "markdown",
    "docx": "docx",
    "word": "docx",
    "pdf": "pdf",
}
CHAPTER_TASK = "bookgen.generate_chapter"
FORMAT_TASKS: dict[str, str] = {
    "markdown": "bookgen.export_to_markdown",
    "docx": "bookgen.export_to_word",
    "pdf": "bookgen.export_to_pdf",
}
DEFAULT_FORMATS: tuple[str, ...] = ("markdown", "docx", "pdf")

MAX_CHAPTERS = 200
MAX_TARGET_WORDS = 50_000
MAX_SUBJECT_LENGTH = 200
DEFAULT_TARGET_WORDS = 1500
#: Chapters of one job in flight at once (queued or running). Bounds how much work a pause or a
#: cancel cannot hold back, while still fanning out over many workers.
DEFAULT_PARALLEL = 16
MAX_PARALLEL = 500

#: Progress steps besides the chapters: input validation, introduction, conclusion, whole-book
#: validation; plus one per export format.
FIXED_STEPS = 4

# Stages of a RUNNING job, in order.
STAGE_CHAPTERS = "chapters"
STAGE_FRAMING = "framing"  # introduction and conclusion
STAGE_CHECKING = "checking"  # validate_complete_biography
STAGE_EXPORTING = "exporting"
STAGE_DONE = "done"


@dataclass(frozen=True)
class JobInputs:
    subject: str
    chapters: int
    target_words: int
    formats: tuple[str, ...]
    priority: int = DEFAULT_PRIORITY
    parallel: int = DEFAULT_PARALLEL


def parse_formats(formats: str | Iterable[str] | None) -> tuple[str, ...]:
    if formats is None:
        return DEFAULT_FORMATS
    items = formats.split(",") if isinstance(formats, str) else list(formats)
    names: list[str] = []
    for item in items:
        key = str(item).strip().lower()
        if not key:
            continue
        if key not in FORMAT_ALIASES:
            known = ", ".join(sorted(FORMAT_ALIASES))
            raise InvalidInput(f"unknown export format {item!r}; choose from {known}")
        if FORMAT_ALIASES[key] not in names:
            names.append(FORMAT_ALIASES[key])
    if not names:
        raise InvalidInput("name at least one export format (md, docx, pdf)")
    return tuple(names)


def _whole(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{name} must be a whole number (got {value!r})")
    return value


def validate_inputs(
    subject: object,
    chapters: object,
    target_words: object = DEFAULT_TARGET_WORDS,
    formats: str | Iterable[str] | None = None,
    priority: object = DEFAULT_PRIORITY,
    parallel: object = DEFAULT_PARALLEL,
) -> JobInputs:
    """Check a job request; raise InvalidInput with a message a user can act on."""
    if not isinstance(subject, str) or not subject.strip():
        raise InvalidInput("the subject of the biography must not be empty")
    subject = " ".join(subject.split())
    if len(subject) > MAX_SUBJECT_LENGTH:
        raise InvalidInput(f"the subject is too long ({len(subject)} characters; at most {MAX_SUBJECT_LENGTH})")
    chapters = _whole("the number of chapters", chapters)
    if not 1 <= chapters <= MAX_CHAPTERS:
        raise InvalidInput(f"the number of chapters must be from 1 to {MAX_CHAPTERS} (got {chapters})")
    target_words = _whole("the target word count", target_words)
    if target_words < 0:
        raise InvalidInput(f"the target word count cannot be negative (got {target_words})")
    if not 1 <= target_words <= MAX_TARGET_WORDS:
        raise InvalidInput(
            f"the target word count per chapter must be from 1 to {MAX_TARGET_WORDS} (got {target_words})"
        )
    priority = _whole("the priority", priority)
    if not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        raise InvalidInput(f"the priority must be from 0 to 10, 10 being the most urgent (got {priority})")
    parallel = _whole("the number of chapters in flight", parallel)
    if not 1 <= parallel <= MAX_PARALLEL:
        raise InvalidInput(f"the number of chapters in flight must be from 1 to {MAX_PARALLEL} (got {parallel})")
    return JobInputs(subject, chapters, target_words, parse_formats(formats), priority, parallel)


def total_steps(chapters: int, formats: Iterable[str]) -> int:
    return FIXED_STEPS + chapters + len(tuple(formats))


def section_words(target_words: int) -> int:
    """Target length of the introduction and the conclusion, from the per-chapter target."""
    return max(1, target_words // 3)


@dataclass(frozen=True)
class JobRecord:
    id: str
    state: JobState
    current: int
    total: int
    status: str
    subject: str
    chapters: int
    target_words: int
    formats: tuple[str, ...]
    priority: int = DEFAULT_PRIORITY
    parallel: int = DEFAULT_PARALLEL
    stage: str = STAGE_CHAPTERS
    dispatched: int = 0
    in_flight: int = 0
    chapters_done: int = 0
    chapters_failed: int = 0
    paused_from: str = ""
    held: tuple[int, ...] = ()  # chapters a pause stopped at their start; sent again first on resume
    outputs: Mapping[str, str] = field(default_factory=dict)
    #: format -> {location, bytes, sha256} of each file written (outputs keeps format -> location).
    files: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: step -> what went wrong with it, while it waits for a retry (a bucket refusing a credential).
    retrying: Mapping[str, str] = field(default_factory=dict)
    errors: tuple[str, ...] = ()
    created_at: float = 0.0
    updated_at: float = 0.0

    @property
    def error(self) -> str:
        return "; ".join(self.errors)

    @property
    def chapters_finished(self) -> int:
        return self.chapters_done + self.chapters_failed

    @property
    def terminal(self) -> bool:
        from .states import is_terminal

        return is_terminal(self.state)

    @classmethod
    def from_hash(cls, job_id: str, raw: Mapping[bytes | str, bytes | str]) -> JobRecord:
        data = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
                for k, v in raw.items()}

        def number(name: str, default: float = 0) -> float:
            value = data.get(name, "")
            return float(value) if value != "" else default

        return cls(
            id=job_id,
            state=JobState(data.get("state", JobState.PENDING)),
            current=int(number("current")),
            total=int(number("total")),
            status=data.get("status", ""),
            subject=data.get("subject", ""),
            chapters=int(number("chapters")),
            target_words=int(number("target_words")),
            formats=tuple(json.loads(data.get("formats") or "[]")),
            priority=int(number("priority", DEFAULT_PRIORITY)),
            parallel=int(number("parallel", DEFAULT_PARALLEL)),
            stage=data.get("stage", STAGE_CHAPTERS),
            dispatched=int(number("dispatched")),
            in_flight=int(number("in_flight")),
            chapters_done=int(number("chapters_done")),
            chapters_failed=int(number("chapters_failed")),
            paused_from=data.get("paused_from", ""),
            held=tuple(json.loads(data.get("held") or "[]")),
            outputs=json.loads(data.get("outputs") or "{}"),
            files=json.loads(data.get("files") or "{}"),
            retrying=json.loads(data.get("retrying") or "{}"),
            errors=tuple(json.loads(data.get("errors") or "[]")),
            created_at=number("created_at"),
            updated_at=number("updated_at"),
        )

    def to_hash(self) -> dict[str, str]:
        return {
            "state": str(self.state),
            "current": str(self.current),
            "total": str(self.total),
            "status": self.status,
            "subject": self.subject,
            "chapters": str(self.chapters),
            "target_words": str(self.target_words),
            "formats": json.dumps(list(self.formats)),
            "priority": str(self.priority),
            "parallel": str(self.parallel),
            "stage": self.stage,
            "dispatched": str(self.dispatched),
            "in_flight": str(self.in_flight),
            "chapters_done": str(self.chapters_done),
            "chapters_failed": str(self.chapters_failed),
            "paused_from": self.paused_from,
            "held": json.dumps(list(self.held)),
            "outputs": json.dumps(dict(self.outputs)),
            "files": json.dumps({fmt: dict(info) for fmt, info in self.files.items()}),
            "retrying": json.dumps(dict(self.retrying)),
            "errors": json.dumps(list(self.errors)),
            "error": self.error,
            "created_at": repr(self.created_at),
            "updated_at": repr(self.updated_at),
        }

    def as_dict(self) -> dict[str, object]:
        """A JSON-friendly view (for `bookgen jobs --json` and the local runtime)."""
        return {
            "id": self.id, "state": str(self.state), "current": self.current, "total": self.total,
            "status": self.status, "subject": self.subject, "chapters": self.chapters,
            "target_words": self.target_words, "formats": list(self.formats), "priority": self.priority,
            "chapters_done": self.chapters_done, "chapters_failed": self.chapters_failed,
            "outputs": dict(self.outputs), "files": {fmt: dict(info) for fmt, info in self.files.items()},
            "retrying": dict(self.retrying), "error": self.error,
            "created_at": self.created_at, "updated_at": self.updated_at,
        }


@dataclass(frozen=True)
class StepMessage:
    """A job step's message, decided in the transaction that registers the step and kept in the
    job's outbox until it is published: enough to publish it again exactly as it would have been."""

    step: str
    task: str
    args: tuple[Any, ...]
    task_id: str
    priority: int  # the public scale, like the job's
    at: float  # when it was decided: the sweep only sends again what its sender had time to send
    # False for the job's own tasks (start, advance): they count no step, so they report to no one.
    callbacks: bool = True

    def to_json(self) -> str:
        return json.dumps({"step": self.step, "task": self.task, "args": list(self.args), "task_id": self.task_id,
                           "priority": self.priority, "at": self.at, "callbacks": self.callbacks})

    @classmethod
    def from_json(cls, raw: bytes | str) -> StepMessage:
        data = json.loads(raw)
        # Entries written before "callbacks" existed were all content steps, which carry them.
        return cls(step=str(data["step"]), task=str(data["task"]), args=tuple(data["args"]),
                   task_id=str(data["task_id"]), priority=int(data["priority"]), at=float(data["at"]),
                   callbacks=bool(data.get("callbacks", True)))
