"""Put a written export where spec.exports says, and describe it: location, size, SHA-256.

The file is always rendered into the output folder first (content/exports.py: a temporary name,
fsync, a collision-free final name). Kept there when the target is local (the folder is the export
volume); uploaded and then removed when it is a bucket, so the scratch folder never fills up. The
SHA-256 is taken from the bytes on disk before they go anywhere: `bookgen fetch` checks the bytes it
receives against it, and the bucket checks the upload against it.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from pathlib import Path

from . import s3
from .target import ExportTarget


@dataclass(frozen=True)
class Stored:
    location: str  # a path in the output folder, or s3://bucket/key
    bytes: int
    sha256: str


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def deliver(target: ExportTarget, path: Path, *, overwrite: bool) -> Stored:
    size, sha256 = path.stat().st_size, sha256_of(path)
    if target.kind == "local" or target.s3 is None:
        return Stored(str(path), size, sha256)
    try:
        key = s3.upload(target.s3, path, path.name, sha256, overwrite=overwrite)
    finally:
        # The bytes are in the bucket, or will be rendered again by the retry: never kept twice.
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return Stored(target.s3.location(key), size, sha256)
