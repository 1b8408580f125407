"""Chapters and sections from a pluggable generator, with the task arguments checked first.

`get_generator(settings)` picks the backend: "offline" (deterministic, no network; the default) or
"openai" (any OpenAI-compatible chat-completions service, see llm.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..config import ConfigError, Settings
from ..errors import InvalidInput
from .biography import check_positive_int, check_subject, check_target_words, count_words, one_line
from .drafts import Draft, Generator, TextRequest
from .offline import OfflineGenerator

__all__ = [
    "DEFAULT_TITLES", "Draft", "Generator", "OfflineGenerator", "TextRequest", "default_title", "get_generator",
    "rewrite_chapter", "write_chapter", "write_section",
]

MAX_CHAPTERS = 200
MAX_FEEDBACK_LENGTH = 4000

DEFAULT_TITLES = (
    "Origins and Early Years", "Education and Formative Influences", "First Steps into Public Life",
    "The Rise to Prominence", "Defining Achievements", "Challenges and Setbacks", "Private Life and Relationships",
    "The Later Years", "Influence on Contemporaries", "Legacy and Remembrance",
)


def get_generator(settings: Settings) -> Generator:
    if settings.generator == "offline":
        return OfflineGenerator(seconds_per_text=settings.offline_seconds)
    if settings.generator == "openai":
        from .llm import OpenAIGenerator  # httpx only when it is used

        return OpenAIGenerator.from_settings(settings)
    raise ConfigError(f"BOOKGEN_GENERATOR must be 'offline' or 'openai' (got {settings.generator!r})")


def default_title(number: int) -> str:
    if number <= len(DEFAULT_TITLES):
        return DEFAULT_TITLES[number - 1]
    return f"Further Episodes, Part {number - len(DEFAULT_TITLES)}"


def check_chapter_count(value: Any) -> int:
    count = check_positive_int(value, "chapter_count")
    if count > MAX_CHAPTERS:
        raise InvalidInput(f"chapter_count must be at most {MAX_CHAPTERS} (got {count})")
    return count


def check_titles(titles: Any, count: int) -> list[str]:
    if titles is None:
        return [default_title(number) for number in range(1, count + 1)]
    if not isinstance(titles, list) or not all(isinstance(title, str) for title in titles):
        raise InvalidInput("titles must be a list of strings")
    if len(titles) != count:
        raise InvalidInput(f"titles has {len(titles)} entries but chapter_count is {count}")
    return [one_line(title) or default_title(number) for number, title in enumerate(titles, start=1)]


def _feedback(value: Any, *, required: bool) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"feedback must be a non-empty string (got {value!r})")
    if len(value) > MAX_FEEDBACK_LENGTH:
        raise InvalidInput(f"feedback is too long ({len(value)} characters, at most {MAX_FEEDBACK_LENGTH})")
    return value.strip()


def _chapter_titles(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(title, str) for title in value):
        raise InvalidInput("chapter_titles must be a list of strings")
    return tuple(one_line(title) for title in value)


def write_chapter(
    generator: Generator, subject: Any, chapter_number: Any, title: Any = None, target_words: Any = 1500,
    feedback: Any = None, previous_text: str | None = None,
) -> dict[str, Any]:
    subject = check_subject(subject)
    number = check_positive_int(chapter_number, "chapter_number")
    words = check_target_words(target_words)
    if title is not None and not isinstance(title, str):
        raise InvalidInput(f"title must be a string or null (got {title!r})")
    title = one_line(title or "") or default_title(number)
    request = TextRequest(subject=subject, kind="chapter", title=title, target_words=words, chapter_number=number,
                          feedback=_feedback(feedback, required=False), previous_text=previous_text)
    draft = generator.write(request)
    return {"number": number, "title": title, "text": draft.text, "word_count": count_words(draft.text),
            "sources": list(draft.sources)}


def write_section(generator: Generator, kind: str, subject: Any, chapter_titles: Any,
                  target_words: Any = 500) -> dict[str, Any]:
    title = {"introduction": "Introduction", "conclusion": "Conclusion"}[kind]
    request = TextRequest(subject=check_subject(subject), kind=kind, title=title,
                          target_words=check_target_words(target_words), chapter_titles=_chapter_titles(chapter_titles))
    draft = generator.write(request)
    return {"title": title, "text": draft.text, "word_count": count_words(draft.text)}


def rewrite_chapter(generator: Generator, chapter: Any, feedback: Any, subject: Any,
                    target_words: Any = None) -> dict[str, Any]:
    """A new draft of the chapter (same number and title) that takes the feedback into account."""
    if not isinstance(chapter, Mapping):
        raise InvalidInput(f"chapter must be an object with number and title (got {type(chapter).__name__})")
    if "number" not in chapter:
        raise InvalidInput("chapter.number is missing")
    previous = chapter.get("text") if isinstance(chapter.get("text"), str) else None
    if target_words is None:
        # Keep the length of the chapter being revised unless told otherwise.
        reported = chapter.get("word_count")
        target_words = reported if isinstance(reported, int) and reported > 0 else (
            count_words(previous) if previous and previous.strip() else 1500)
    return write_chapter(generator, subject, chapter["number"], chapter.get("title"), target_words,
                         _feedback(feedback, required=True), previous_text=previous)


def sources_of(chapters: Sequence[Mapping[str, Any]]) -> list[str]:
    return list(dict.fromkeys(source for chapter in chapters for source in chapter.get("sources") or []))
