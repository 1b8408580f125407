"""`bookgen files JOB` and `bookgen fetch JOB [-o DIR]`: a finished job's books, wherever they are.

Where the files are read from:
- a run on this machine (`bookgen up`, or any Redis the connection options name): the job record says
  where each file is; a path is read from this machine, an s3:// location from its bucket (the endpoint
  recorded with the file, credentials from BOOKGEN_S3_CREDENTIALS_DIR or the AWS_* variables);
- a queue on a cluster (`--queue NAME -n NAMESPACE [--context CTX]`): both the record and the bytes are
  read in a pod of the export pool, through the API server (pod_exec.py), with the pod's own volume or
  credentials.
Every download is checked against the size and SHA-256 the worker recorded, then renamed into place:
a file in DIR is whole and is the one the worker wrote, or it is not there.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import MappingProxyType
from typing import Any

from bookgen_worker.errors import BookGenError

from .cluster import QueueRef
from .cluster_args import queue_ref
from .connect import add_output_option, console, dump

FETCH_MODULE = ("python", "-m", "bookgen_worker.storage.fetch")
#: format -> the names `--format` accepts
FORMAT_NAMES = MappingProxyType({"markdown": ("md", "markdown"), "docx": ("docx", "word"), "pdf": ("pdf",)})

Files = list[dict[str, Any]]
Reader = Callable[[dict[str, Any]], Iterator[bytes]]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    files = subparsers.add_parser("files", help="a job's files: where each is, its size and SHA-256")
    files.add_argument("job_id")
    add_output_option(files)
    files.set_defaults(handler=list_files)

    fetch = subparsers.add_parser("fetch", help="download a job's files (checked against their SHA-256)")
    fetch.add_argument("job_id")
    fetch.add_argument("-o", "--output-dir", type=Path, default=Path("."), metavar="DIR",
                       help="where to put them (default: this folder)")
    fetch.add_argument("--format", default="", help="only these formats, comma-separated: md, docx, pdf")
    fetch.set_defaults(handler=fetch_files)


def _source(args: argparse.Namespace) -> tuple[Files, Reader]:
    # The cluster options (--queue, -n, --context, --kubeconfig) are every command's: cluster_args.py.
    queue = queue_ref(args)
    return _cluster_source(args, queue) if queue else _local_source(args)


def _cluster_source(args: argparse.Namespace, queue: QueueRef) -> tuple[Files, Reader]:
    import json

    from .pod_exec import export_pod

    pod = export_pod(queue, args.environ)
    files: Files = json.loads(pod.output([*FETCH_MODULE, "files", args.job_id]))
    return files, lambda entry: pod.stream([*FETCH_MODULE, "cat", str(entry["location"])])


def _local_source(args: argparse.Namespace) -> tuple[Files, Reader]:
    from bookgen_worker.storage import fetch
    from bookgen_worker.storage.target import S3Target, target_from_env

    from .connect import connect

    _, settings = connect(args)
    files = fetch.job_files(settings, args.job_id)
    configured = target_from_env(args.environ).s3

    def read(entry: dict[str, Any]) -> Iterator[bytes]:
        location = str(entry["location"])
        if not location.startswith("s3://"):
            return _read_path(Path(location))
        from bookgen_worker.storage import s3

        bucket, _ = s3.split_location(location)
        credentials = args.environ.get("BOOKGEN_S3_CREDENTIALS_DIR")
        target = configured or S3Target(bucket=bucket, endpoint=str(entry.get("endpoint") or ""),
                                        credentials_dir=Path(credentials) if credentials else None)
        return s3.read(target, location)

    return files, read


def _read_path(path: Path) -> Iterator[bytes]:
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise BookGenError(f"{path} is not on this machine (a queue on a cluster? use --queue NAME -n NAMESPACE)") \
            from None
    with handle:
        yield from iter(lambda: handle.read(1 << 20), b"")


def _chosen(files: Files, wanted: str) -> Files:
    if not wanted:
        return files
    names = {name.strip().lower() for name in wanted.split(",") if name.strip()}
    known = {alias for aliases in FORMAT_NAMES.values() for alias in aliases}
    unknown = sorted(names - known)
    if unknown:
        raise ValueError(f"unknown format {', '.join(unknown)}; choose from md, docx, pdf")
    return [entry for entry in files if names & set(FORMAT_NAMES.get(str(entry["format"]), ()))]


def list_files(args: argparse.Namespace) -> int:
    files, _ = _source(args)
    if args.output != "table":
        sys.stdout.write(dump(files, args.output))
        return 0
    if not files:
        print(f"job {args.job_id} has no files (yet): see `bookgen show {args.job_id}`", file=sys.stderr)
        return 1
    from rich.table import Table

    table = Table("format", "location", "size", "sha256", box=None, header_style="bold")
    for entry in files:
        size = "?" if entry.get("bytes") is None else f"{entry['bytes']:,}"
        table.add_row(str(entry["format"]), str(entry["location"]), size, str(entry.get("sha256") or "?"))
    console().print(table)
    return 0


def fetch_files(args: argparse.Namespace) -> int:
    files, read = _source(args)
    files = _chosen(files, args.format)
    if not files:
        raise BookGenError(f"job {args.job_id} has no files to fetch (yet): see `bookgen show {args.job_id}`")
    out: Path = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    for entry in files:
        target = out / Path(str(entry["location"]).rsplit("/", 1)[-1]).name
        size, digest = _download(read(entry), target, entry)
        print(f"{target}  {size} bytes  sha256 {digest}" + ("  (not recorded: unchecked)" if not entry.get("sha256")
                                                            else "  ok"))
    return 0


def _download(chunks: Iterator[bytes], target: Path, entry: dict[str, Any]) -> tuple[int, str]:
    """Write to a temporary file beside the target, check size and SHA-256, then rename into place."""
    handle, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    digest, size = hashlib.sha256(), 0
    try:
        with os.fdopen(handle, "wb") as tmp:
            for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                tmp.write(chunk)
        expected_size, expected = entry.get("bytes"), entry.get("sha256")
        wrong_sum = expected is not None and digest.hexdigest() != expected
        if wrong_sum or (expected_size is not None and size != expected_size):
            raise BookGenError(f"{entry['location']}: received {size} bytes with sha256 {digest.hexdigest()}, but "
                               f"the worker wrote {expected_size} bytes with sha256 {expected}; nothing was saved")
        os.chmod(name, 0o644)
        os.replace(name, target)
    finally:
        if os.path.exists(name):
            os.unlink(name)
    return size, digest.hexdigest()
