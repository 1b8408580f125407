"""File names from user text, and paths that can never leave the output folder.

A subject such as `../../etc/passwd` or `/root/.ssh/id_rsa` becomes a harmless name inside the
output folder: the name is reduced to [A-Za-z0-9._-], and the resolved path is checked again,
so a symlink planted in the output folder cannot redirect a write either.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

from ..errors import PermanentError

FALLBACK_NAME = "biography"
#: Long enough for "subject-jobid", short enough for every file system (255 bytes) with a suffix.
MAX_NAME_LENGTH = 120

_DISALLOWED = re.compile(r"[^A-Za-z0-9._-]+")
_DOTS = re.compile(r"\.{2,}")


def sanitize_filename(text: str | None, *, fallback: str = FALLBACK_NAME) -> str:
    """A file name stem made only of [A-Za-z0-9._-], no leading dot, at most MAX_NAME_LENGTH long."""
    if not isinstance(text, str):
        return fallback
    # NFKD splits accents from letters ("é" -> "e" + accent) so they survive the ASCII filter.
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    name = _DISALLOWED.sub("_", ascii_text)
    name = _DOTS.sub(".", name)  # ".." never survives, even where it would be harmless
    name = name.strip("._-")[:MAX_NAME_LENGTH].rstrip("._-")
    return name or fallback


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
