"""Checking and normalising the biography dicts (subject, chapters, introduction, conclusion, sources)
before they are rendered."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidInput

MAX_SUBJECT_LENGTH = 200
MAX_TARGET_WORDS = 50_000

# Characters XML (hence .docx and reportlab markup) cannot hold; a user's text must not crash an export.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def count_words(text: str) -> int:
    return len(text.split())


def clean_text(text: str) -> str:
    return _XML_ILLEGAL.sub("", text)


def one_line(text: str) -> str:
    """Titles and headings: one line, single spaces."""
    return " ".join(clean_text(text).split())


def check_subject(subject: object, field: str = "subject") -> str:
    if not isinstance(subject, str) or not subject.strip():
        raise InvalidInput(f"{field} must be a non-empty string (got {subject!r})")
    subject = one_line(subject)
    if len(subject) > MAX_SUBJECT_LENGTH:
        raise InvalidInput(f"{field} is too long ({len(subject)} characters, at most {MAX_SUBJECT_LENGTH})")
    return subject


def check_target_words(value: Any, field: str = "target_words") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{field} must be a whole number (got {value!r})")
    if value <= 0:
        raise InvalidInput(f"{field} must be positive (got {value})")
    if value > MAX_TARGET_WORDS:
        raise InvalidInput(f"{field} must be at most {MAX_TARGET_WORDS} (got {value})")
    return value


def check_positive_int(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(f"{field} must be a whole number of at least 1 (got {value!r})")
    return value


@dataclass(frozen=True)
class Section:
    title: str
    text: str

    @property
    def paragraphs(self) -> list[str]:
        return paragraphs(self.text)


@dataclass(frozen=True)
class Chapter:
    number: int
    title: str
    text: str
    sources: tuple[str, ...]

    @property
    def heading(self) -> str:
        return f"Chapter {self.number}: {self.title}" if self.title else f"Chapter {self.number}"

    @property
    def paragraphs(self) -> list[str]:
        return paragraphs(self.text)


@dataclass(frozen=True)
class Book:
    subject: str
    introduction: Section | None
    chapters: tuple[Chapter, ...]
    conclusion: Section | None
    sources: tuple[str, ...]


def paragraphs(text: str) -> list[str]:
    """Blank-line separated paragraphs, each on one line."""
    return [" ".join(block.split()) for block in re.split(r"\n\s*\n", text) if block.strip()]


def parse_book(biography: Any) -> Book:
    """The biography as a Book, or InvalidInput naming the first malformed field."""
    if not isinstance(biography, Mapping):
        raise InvalidInput(f"biography must be an object/dict (got {type(biography).__name__})")
    subject = check_subject(biography.get("subject"), "biography.subject")
    raw_chapters = biography.get("chapters")
    if not isinstance(raw_chapters, list) or not raw_chapters:
        raise InvalidInput("biography.chapters must be a non-empty list of chapters")
    chapters = tuple(_chapter(item, f"biography.chapters[{index}]") for index, item in enumerate(raw_chapters))
    sources = _sources(biography.get("sources", []), "biography.sources")
    if not sources:  # fall back to the chapters' own sources, in order, without duplicates
        sources = tuple(dict.fromkeys(source for chapter in chapters for source in chapter.sources))
    return Book(
        subject=subject,
        introduction=_section(biography.get("introduction"), "biography.introduction", "Introduction"),
        chapters=chapters,
        conclusion=_section(biography.get("conclusion"), "biography.conclusion", "Conclusion"),
        sources=sources,
    )


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a string (got {type(value).__name__})")
    return clean_text(value)


def _section(value: Any, field: str, default_title: str) -> Section | None:
    """An empty or absent introduction/conclusion is left out (a job may export without one)."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidInput(f"{field} must be an object with title and text")
    text = _text(value.get("text", ""), f"{field}.text")
    if not text.strip():
        return None
    title = one_line(_text(value.get("title") or default_title, f"{field}.title")) or default_title
    return Section(title=title, text=text)


def _chapter(value: Any, field: str) -> Chapter:
    if not isinstance(value, Mapping):
        raise InvalidInput(f"{field} must be an object with number, title and text")
    for key in ("number", "title", "text"):
        if key not in value:
            raise InvalidInput(f"{field}.{key} is missing")
    number = check_positive_int(value["number"], f"{field}.number")
    return Chapter(
        number=number,
        title=one_line(_text(value["title"], f"{field}.title")),
        text=_text(value["text"], f"{field}.text"),
        sources=_sources(value.get("sources", []), f"{field}.sources"),
    )


def _sources(value: Any, field: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidInput(f"{field} must be a list of strings")
    return tuple(one_line(item) for item in value if item.strip())
