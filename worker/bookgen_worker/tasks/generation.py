"""Generation tasks (queue content_generation): thin wrappers over content.generators."""

from __future__ import annotations

from typing import Any

from celery import group

from ..app import bookgen_settings
from ..config import ConfigError
from ..content import generators
from ..content.biography import check_subject, check_target_words
from ..errors import PermanentError
from .base import bookgen_task


def _generator(task: Any) -> generators.Generator:
    try:
        return generators.get_generator(bookgen_settings(task.app))
    except ConfigError as exc:  # retrying cannot fix a configuration mistake
        raise PermanentError(str(exc)) from None


def fan_out(task: Any, signatures: list[Any]) -> dict[str, Any]:
    """Send the signatures as one Celery group at the priority of the current task; the group is
    saved so callers can `GroupResult.restore(group_id)`."""
    options: dict[str, Any] = {}
    priority = (task.request.delivery_info or {}).get("priority")
    if priority is not None:
        options["priority"] = priority
    result = group(signatures).apply_async(**options)
    result.save()
    return {"group_id": result.id, "task_ids": [child.id for child in result.results]}


@bookgen_task("generate_chapter")
def generate_chapter(self: Any, subject: str, chapter_number: int, title: str | None = None,
                     target_words: int = 1500, feedback: str | None = None) -> dict[str, Any]:
    return generators.write_chapter(_generator(self), subject, chapter_number, title, target_words, feedback)


@bookgen_task("generate_introduction")
def generate_introduction(self: Any, subject: str, chapter_titles: list[str],
                          target_words: int = 500) -> dict[str, Any]:
    return generators.write_section(_generator(self), "introduction", subject, chapter_titles, target_words)


@bookgen_task("generate_conclusion")
def generate_conclusion(self: Any, subject: str, chapter_titles: list[str], target_words: int = 500) -> dict[str, Any]:
    return generators.write_section(_generator(self), "conclusion", subject, chapter_titles, target_words)


@bookgen_task("regenerate_chapter")
def regenerate_chapter(self: Any, chapter: dict[str, Any], feedback: str, subject: str,
                       target_words: int | None = None) -> dict[str, Any]:
    return generators.rewrite_chapter(_generator(self), chapter, feedback, subject, target_words)


@bookgen_task("batch_generate_chapters")
def batch_generate_chapters(self: Any, subject: str, chapter_count: int, target_words: int = 1500,
                            titles: list[str] | None = None) -> dict[str, Any]:
    """Fan out one generate_chapter per chapter, in parallel; returns the group and task ids."""
    subject = check_subject(subject)  # check everything before sending anything
    count = generators.check_chapter_count(chapter_count)
    words = check_target_words(target_words)
    names = generators.check_titles(titles, count)
    signatures = [generate_chapter.s(subject, number, names[number - 1], words) for number in range(1, count + 1)]
    return fan_out(self, signatures)
