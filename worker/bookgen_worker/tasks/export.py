"""Export tasks (queue export): render into settings.output_dir (never outside it), then deliver the
file where spec.exports says (storage/deliver.py): kept there, or uploaded to the bucket.

A job's export step passes its job id: a delivery that fails (a bucket refusing a wrong credential, an
endpoint down) is written into the job's record before the task retries, so `bookgen show` says what is
wrong while the export waits (jobs/store.note_retry); nothing is lost, since each retry renders the
book again from the job's stored chapters.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from ..app import bookgen_settings
from ..content import exports
from ..content.biography import parse_book
from ..errors import InvalidInput
from ..storage.deliver import deliver
from ..storage.s3 import StorageError
from .base import bookgen_task
from .generation import fan_out


def _export(task: Any, biography: dict[str, Any], fmt: str, filename: str | None, overwrite: bool,
            job_id: str | None) -> dict[str, Any]:
    if not isinstance(overwrite, bool):
        raise InvalidInput(f"overwrite must be true or false (got {overwrite!r})")
    settings = bookgen_settings(task.app)
    written = exports.export(biography, fmt, settings.output_dir, filename, overwrite)
    try:
        stored = deliver(settings.exports, Path(written["path"]), overwrite=overwrite)
    except StorageError as exc:
        if isinstance(job_id, str) and job_id:
            _tell_job(task, settings, job_id, fmt, exc)
        raise
    result = {"format": fmt, "path": stored.location, "bytes": stored.bytes, "sha256": stored.sha256}
    if settings.exports.s3 is not None:  # so a reader on another machine knows which server to ask
        result["endpoint"] = settings.exports.s3.endpoint
    return result


def _tell_job(task: Any, settings: Any, job_id: str, fmt: str, exc: Exception) -> None:
    from ..jobs import store
    from ..queues import task_type_of

    policy = settings.retry_for(task.name, task_type_of(task.name))
    attempt = int(task.request.retries or 0) + 1
    will_retry = attempt <= policy.max_retries and not task.request.called_directly
    note = (f"attempt {attempt} failed, retrying: {exc}" if will_retry
            else f"attempt {attempt} failed, no retry left: {exc}")
    with contextlib.suppress(Exception):  # a courtesy: the retry itself must happen whatever Redis says
        store.note_retry(settings, job_id, f"export:{fmt}", note)


# `overwrite`: replace an existing file of that name (a job re-running its own export step does);
# by default an existing file is kept and the export takes the next free name.
@bookgen_task("export_to_markdown")
def export_to_markdown(self: Any, biography: dict[str, Any], filename: str | None = None,
                       overwrite: bool = False, job_id: str | None = None) -> dict[str, Any]:
    return _export(self, biography, "markdown", filename, overwrite, job_id)


@bookgen_task("export_to_word")
def export_to_word(self: Any, biography: dict[str, Any], filename: str | None = None,
                   overwrite: bool = False, job_id: str | None = None) -> dict[str, Any]:
    return _export(self, biography, "docx", filename, overwrite, job_id)


@bookgen_task("export_to_pdf")
def export_to_pdf(self: Any, biography: dict[str, Any], filename: str | None = None,
                  overwrite: bool = False, job_id: str | None = None) -> dict[str, Any]:
    return _export(self, biography, "pdf", filename, overwrite, job_id)


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
