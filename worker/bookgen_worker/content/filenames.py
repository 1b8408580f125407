"""File names from user text, and paths that can never leave the output folder.

A subject such as `../../etc/passwd` or `/root/.ssh/id_rsa` becomes a harmless name inside the
output folder: the name is transliterated to ASCII (anyascii: every script, so "毛泽东" gives
"MaoZeDong" and "Владимир" gives "Vladimir", instead of all of them becoming "biography"), reduced to
[A-Za-z0-9._-], and the resolved path is checked again, so a symlink planted in the output folder
cannot redirect a write either. A job's files always end with its full id (`job_file_stem`), however
long the subject, so two jobs never share a file name.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path

from anyascii import anyascii

from ..errors import PermanentError

FALLBACK_NAME = "biography"
#: Long enough for "subject-jobid", short enough for every file system (255 bytes) with a suffix.
MAX_NAME_LENGTH = 120

_DISALLOWED = re.compile(r"[^A-Za-z0-9._-]+")
_DOTS = re.compile(r"\.{2,}")


def sanitize_filename(text: str | None, *, fallback: str = FALLBACK_NAME, max_length: int = MAX_NAME_LENGTH) -> str:
    """A file name stem made only of [A-Za-z0-9._-], no leading dot, at most `max_length` long."""
    if not isinstance(text, str):
        return fallback
    ascii_text = anyascii(unicodedata.normalize("NFC", text.replace("\x00", "")))
    name = _DISALLOWED.sub("_", ascii_text)
    name = _DOTS.sub(".", name)  # ".." never survives, even where it would be harmless
    name = name.strip("._-")[:max_length].rstrip("._-")
    return name or fallback


def job_file_stem(subject: str, job_id: str) -> str:
    """`<readable subject>-<job id>`: the subject is shortened so that the id always survives whole."""
    tail = "-" + sanitize_filename(job_id, fallback="job")
    return sanitize_filename(subject, max_length=MAX_NAME_LENGTH - len(tail)) + tail


def numbered(path: Path, limit: int = 1000) -> Iterator[Path]:
    """`path`, then `stem-2.ext`, `stem-3.ext`, ...: the names to try when a file must not be replaced.
    The stem is shortened to make room, so a number is never cut off."""
    suffix = "".join(path.suffixes[-1:])
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    yield path
    for number in range(2, limit + 2):
        tag = f"-{number}"
        yield path.with_name(f"{stem[: MAX_NAME_LENGTH - len(tag)].rstrip('._-') or FALLBACK_NAME}{tag}{suffix}")


def safe_path(output_dir: Path | str, user_text: str | None, suffix: str) -> Path:
    """`output_dir/<sanitised user_text><suffix>`, resolved and proven to be directly inside output_dir."""
    root = Path(output_dir).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    root = root.resolve()
    stem = sanitize_filename(user_text)
    if suffix and stem.lower().endswith(suffix.lower()) and len(stem) > len(suffix):
        stem = stem[: -len(suffix)]  # "book.md" as a file name stays book.md, not book.md.md
    path = (root / f"{stem}{suffix}").resolve()
    if path.parent != root:
        raise PermanentError(f"refusing to write {path}: it is outside the output folder {root}")
    return path
