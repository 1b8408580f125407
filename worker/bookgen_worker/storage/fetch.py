"""Reading finished books back: `python -m bookgen_worker.storage.fetch files JOB | cat LOCATION`.

`bookgen files|fetch` call the functions here in-process for a run on this machine. For a queue on a
cluster they run this module in a pod of the export pool (kubectl exec through the API server), which
holds the export volume or the bucket's credentials: the command line needs neither a route to the
volume nor to an in-cluster S3 endpoint, only the right to exec into the queue's pods.

`files` prints the job's files as JSON; `cat` writes one file's bytes to stdout, and only a file of this
queue's exports (a path inside the output folder, or an object of the export bucket and prefix).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..config import Settings
from ..errors import BookGenError
from . import s3

CHUNK = 1 << 20


def job_files(settings: Settings, job_id: str) -> list[dict[str, Any]]:
    """[{format, location, bytes, sha256}] of a job (bytes and sha256 are None for a job finished
    before they were recorded)."""
    from ..jobs.store import get_job

    job = get_job(settings, job_id)
    out = []
    for fmt, path in job.outputs.items():
        info = dict(job.files.get(fmt) or {})
        entry = {"format": fmt, "location": str(info.get("location") or path),
                 "bytes": info.get("bytes"), "sha256": info.get("sha256")}
        if info.get("endpoint") is not None:
            entry["endpoint"] = info["endpoint"]
        out.append(entry)
    return out


def read_location(settings: Settings, location: str) -> Iterator[bytes]:
    """The bytes of one exported file, in chunks."""
    if location.startswith("s3://"):
        if settings.exports.s3 is None:
            raise BookGenError(f"{location} is in a bucket, but these workers export to {settings.output_dir}")
        yield from s3.read(settings.exports.s3, location)
        return
    root = Path(settings.output_dir).resolve()
    path = Path(location).resolve()
    if path.parent != root:
        raise BookGenError(f"{location} is not a file of the export folder {root}")
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise BookGenError(f"{location} does not exist (any more) in {root}") from None
    with handle:
        yield from iter(lambda: handle.read(CHUNK), b"")


def main(argv: Sequence[str] | None = None) -> int:
    from ..config import settings_from_env

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] not in ("files", "cat"):
        print("usage: python -m bookgen_worker.storage.fetch files JOB_ID | cat LOCATION", file=sys.stderr)
        return 2
    try:
        settings = settings_from_env()
        if args[0] == "files":
            print(json.dumps(job_files(settings, args[1])))
            return 0
        out = sys.stdout.buffer
        for chunk in read_location(settings, args[1]):
            out.write(chunk)
        out.flush()
    except (BookGenError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
