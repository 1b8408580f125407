"""Validation tasks (queue validation): thin wrappers over content.validation."""

from __future__ import annotations

from typing import Any

from ..content import validation
from .base import bookgen_task


@bookgen_task("validate_chapter_length")
def validate_chapter_length(self: Any, chapter: dict[str, Any], target_words: int,
                            tolerance: float = 0.2) -> dict[str, Any]:
    return validation.chapter_length(chapter, target_words, tolerance)


@bookgen_task("validate_sources")
def validate_sources(self: Any, sources: list[str], min_count: int = 3) -> dict[str, Any]:
    return validation.sources(sources, min_count)


@bookgen_task("validate_content_quality")
def validate_content_quality(self: Any, text: str) -> dict[str, Any]:
    return validation.content_quality(text)


@bookgen_task("validate_complete_biography")
def validate_complete_biography(self: Any, biography: dict[str, Any],
                                target_words: int | None = None) -> dict[str, Any]:
    return validation.complete_biography(biography, target_words)
