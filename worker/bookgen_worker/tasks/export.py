"""Export tasks (queue export): files under settings.output_dir, never outside it."""

from __future__ import annotations

from typing import Any

from ..app import bookgen_settings
from ..content import exports
from ..content.biography import parse_book
from ..errors import InvalidInput
from .base import bookgen_task
from .generation import fan_out


def _export(task: Any, biography: dict[str, Any], fmt: str, filename: str | None, overwrite: bool) -> dict[str, Any]:
    if not isinstance(overwrite, bool):
        raise InvalidInput(f"overwrite must be true or false (got {overwrite!r})")
    return exports.export(biography, fmt, bookgen_settings(task.app).output_dir, filename, overwrite)


# `overwrite`: replace an existing file of that name (a job re-running its own export step does);
# by default an existing file is kept and the export takes the next free name.
@bookgen_task("export_to_markdown")
def export_to_markdown(self: Any, biography: dict[str, Any], filename: str | None = None,
                       overwrite: bool = False) -> dict[str, Any]:
    return _export(self, biography, "markdown", filename, overwrite)


@bookgen_task("export_to_word")
def export_to_word(self: Any, biography: dict[str, Any], filename: str | None = None,
                   overwrite: bool = False) -> dict[str, Any]:
    return _export(self, biography, "docx", filename, overwrite)


@bookgen_task("export_to_pdf")
def export_to_pdf(self: Any, biography: dict[str, Any], filename: str | None = None,
                  overwrite: bool = False) -> dict[str, Any]:
    return _export(self, biography, "pdf", filename, overwrite)


FORMAT_TASKS = {"markdown": export_to_markdown, "docx": export_to_word, "pdf": export_to_pdf}


@bookgen_task("export_all_formats")
def export_all_formats(self: Any, biography: dict[str, Any], formats: list[str] | None = None,
                       filename: str | None = None) -> dict[str, Any]:
    """One export task per format, in parallel (a Celery group); returns the group and task ids."""
    chosen = exports.normalise_formats(formats)
    parse_book(biography)  # a malformed biography fails here once, not in every format
    if filename is not None and not isinstance(filename, str):
        raise InvalidInput(f"filename must be a string or null (got {type(filename).__name__})")
    return fan_out(self, [FORMAT_TASKS[fmt].s(biography, filename) for fmt in chosen])
