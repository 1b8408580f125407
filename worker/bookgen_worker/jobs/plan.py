"""Pure decisions of a book job: status lines, the assembled biography, the final outcome.

No I/O here: the orchestration tasks read the job and its step results from Redis, ask these
functions, and write what they answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .records import STAGE_CHAPTERS, STAGE_CHECKING, STAGE_EXPORTING, STAGE_FRAMING, JobRecord
from .states import JobState

Results = Mapping[str, Mapping[str, Any]]


def status_line(job: JobRecord) -> str:
    if job.stage == STAGE_CHAPTERS:
        line = f"Writing chapters: {job.chapters_done}/{job.chapters} done, {job.in_flight} in flight"
        return line + (f", {job.chapters_failed} failed" if job.chapters_failed else "")
    if job.stage == STAGE_FRAMING:
        return "Writing the introduction and the conclusion"
    if job.stage == STAGE_CHECKING:
        return "Validating the complete biography"
    if job.stage == STAGE_EXPORTING:
        exported = job.current - (job.total - len(job.formats))
        line = f"Exporting: {max(exported, 0)}/{len(job.formats)} formats"
        if not job.retrying:
            return line
        # One problem in full (formats failing together fail alike: a wrong key refuses them all).
        (step, problem), *others = sorted(job.retrying.items())
        also = f" (also failing: {', '.join(name for name, _ in others)})" if others else ""
        return f"{line}; {step}: {problem}{also}"
    return job.status


def chapter_titles(results: Results) -> list[str]:
    return [chapter.get("title", f"Chapter {chapter.get('number')}") for chapter in written_chapters(results)]


def written_chapters(results: Results) -> list[dict[str, Any]]:
    chapters = [
        dict(entry["result"]) for key, entry in results.items()
        if key.startswith("chapter:") and entry.get("ok") and isinstance(entry.get("result"), Mapping)
    ]
    return sorted(chapters, key=lambda chapter: int(chapter.get("number", 0)))


def _section(results: Results, key: str, title: str) -> dict[str, Any]:
    entry = results.get(key) or {}
    if entry.get("ok") and isinstance(entry.get("result"), Mapping):
        return dict(entry["result"])
    # A failed introduction/conclusion must not cost the whole book: export without it, and the
    # job ends COMPLETED_WITH_ERRORS saying so.
    return {"title": title, "text": "", "word_count": 0}


def assemble(job: JobRecord, results: Results) -> dict[str, Any]:
    """The biography dict (content/biography.py checks its shape) from the steps that succeeded."""
    chapters = written_chapters(results)
    sources: list[str] = []
    for chapter in chapters:
        for source in chapter.get("sources") or []:
            if source not in sources:
                sources.append(source)
    return {
        "subject": job.subject,
        "introduction": _section(results, "introduction", "Introduction"),
        "chapters": chapters,
        "conclusion": _section(results, "conclusion", "Conclusion"),
        "sources": sources,
    }


@dataclass(frozen=True)
class Outcome:
    state: JobState
    status: str
    outputs: dict[str, str]
    errors: tuple[str, ...]
    files: dict[str, dict[str, Any]] | None = None


def outcome(job: JobRecord, results: Results) -> Outcome:
    """COMPLETED when every step succeeded, COMPLETED_WITH_ERRORS when some failed but files exist,
    FAILED when no file could be written. Failed steps are already in `job.errors`."""
    written = {
        fmt: entry["result"]
        for fmt in job.formats
        if (entry := results.get(f"export:{fmt}")) and entry.get("ok") and isinstance(entry.get("result"), Mapping)
    }
    outputs = {fmt: str(result["path"]) for fmt, result in written.items()}
    files = {fmt: {"location": str(result["path"]), "bytes": result.get("bytes"), "sha256": result.get("sha256"),
                   **({"endpoint": result["endpoint"]} if result.get("endpoint") is not None else {})}
             for fmt, result in written.items()}
    extra: list[str] = []
    check = (results.get("validate") or {}).get("result")
    if isinstance(check, Mapping) and not check.get("valid", True):
        extra.extend(f"validation: {problem}" for problem in check.get("errors") or ["the biography is incomplete"])
    if not outputs:
        return Outcome(JobState.FAILED, "Failed: no file could be exported", outputs, tuple(extra), files)
    if job.errors or extra:
        problems = len(job.errors) + len(extra)
        status = f"Completed with {problems} problem(s): {len(outputs)}/{len(job.formats)} files written"
        return Outcome(JobState.COMPLETED_WITH_ERRORS, status, outputs, tuple(extra), files)
    return Outcome(JobState.COMPLETED, f"Completed: {len(outputs)} file(s) written", outputs, (), files)
