"""What a generator is asked for and what it returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class TextRequest:
    subject: str
    kind: str  # "chapter" | "introduction" | "conclusion"
    title: str
    target_words: int
    chapter_number: int | None = None
    chapter_titles: tuple[str, ...] = ()
    feedback: str | None = None
    previous_text: str | None = None


@dataclass(frozen=True)
class Draft:
    text: str
    sources: tuple[str, ...] = field(default_factory=tuple)


class Generator(Protocol):
    name: str

    def write(self, request: TextRequest) -> Draft: ...
