"""`bookgen submit|watch|pause|resume|cancel|jobs`: whole-book jobs from the command line."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from typing import TYPE_CHECKING

from bookgen_worker.config import Settings, redact
from bookgen_worker.errors import RedisUnavailable
from bookgen_worker.jobs.records import DEFAULT_PARALLEL, DEFAULT_TARGET_WORDS, JobRecord
from bookgen_worker.jobs.states import JobState
from bookgen_worker.queues import DEFAULT_PRIORITY

from .connect import add_output_option, connect, console, dump

if TYPE_CHECKING:
    from rich.console import Console

# redis, rich and the job store are imported where used: `bookgen --help` should not pay for them.

#: How often `watch` reads the job hash (one HGETALL; cheap).
POLL_SECONDS = 0.2


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    submit = subparsers.add_parser("submit", help="start a whole biography as one job and print its id")
    submit.add_argument("subject", help="whose biography to write, e.g. 'Ada Lovelace'")
    submit.add_argument("--chapters", type=int, default=10, help="number of chapters (default 10)")
    submit.add_argument("--words", type=int, default=DEFAULT_TARGET_WORDS,
                        help=f"target words per chapter (default {DEFAULT_TARGET_WORDS})")
    submit.add_argument("--formats", default="md,docx,pdf", help="comma-separated: md, docx, pdf (default all)")
    submit.add_argument("--priority", type=int, default=DEFAULT_PRIORITY,
                        help=f"0..10, 10 the most urgent (default {DEFAULT_PRIORITY})")
    submit.add_argument("--parallel", type=int, default=DEFAULT_PARALLEL,
                        help=f"chapters in flight at once (default {DEFAULT_PARALLEL})")
    submit.add_argument("--wait", action="store_true", help="show progress until the job ends")
    add_output_option(submit)
    submit.set_defaults(handler=submit_job)

    watch = subparsers.add_parser("watch", help="show a job's progress until it ends")
    watch.add_argument("job_id")
    add_output_option(watch)
    watch.set_defaults(handler=watch_job)

    show = subparsers.add_parser("show", help="everything recorded about one job")
    show.add_argument("job_id")
    add_output_option(show)
    show.set_defaults(handler=show_job)

    for name, helptext, handler in (
        ("pause", "hold a job: chapters not yet sent wait until it is resumed", pause_job),
        ("resume", "continue a paused job", resume_job),
        ("cancel", "stop a job for good and revoke what it has queued", cancel_job),
    ):
        action = subparsers.add_parser(name, help=helptext)
        action.add_argument("job_id")
        action.set_defaults(handler=handler)

    listing = subparsers.add_parser("jobs", help="list the latest jobs, newest first")
    listing.add_argument("--limit", type=int, default=20)
    add_output_option(listing, json_alias=True)
    listing.set_defaults(handler=list_jobs)


def _positive(value: int, option: str) -> None:
    if value < 1:
        raise ValueError(f"{option} must be at least 1 (got {value})")


def submit_job(args: argparse.Namespace) -> int:
    from bookgen_worker.jobs import store

    app, settings = connect(args)
    job_id = store.submit_job(settings, args.subject, args.chapters, args.words, args.formats,
                              priority=args.priority, parallel=args.parallel, celery_app=app)
    if args.output == "table":
        print(job_id, flush=True)
    elif not args.wait:  # with --wait, the records that follow carry the id
        sys.stdout.write(dump({"id": job_id}, args.output))
    return follow(settings, job_id, output=args.output) if args.wait else 0


def watch_job(args: argparse.Namespace) -> int:
    from bookgen_worker.jobs import store

    _, settings = connect(args)
    store.get_job(settings, args.job_id)  # unknown id: a clear error before any progress bar
    return follow(settings, args.job_id, output=args.output)


def show_job(args: argparse.Namespace) -> int:
    from bookgen_worker.jobs import store

    _, settings = connect(args)
    job = store.get_job(settings, args.job_id)
    if args.output != "table":
        sys.stdout.write(dump(job.as_dict(), args.output))
        return 0
    out = console()
    for key, value in job.as_dict().items():
        if key in ("created_at", "updated_at") and isinstance(value, float):
            value = _when(value) + " UTC"
        out.print(f"{key + ':':<16} {value}", highlight=False, soft_wrap=True, markup=False)
    return 0


def _reading(settings: Settings, job_id: str) -> JobRecord:
    """One read of the job; Redis going away mid-watch is the one-line RedisUnavailable."""
    import redis
    from bookgen_worker.jobs import store

    try:
        return store.get_job(settings, job_id)
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RedisUnavailable(f"lost Redis at {redact(settings.redis_url)} while following job {job_id}: "
                               f"{reason}") from None


def follow(settings: Settings, job_id: str, console: Console | None = None, output: str = "table") -> int:
    """A progress bar until the job reaches a terminal state; exit status 0 only for COMPLETED.
    With -o json|yaml: one record per change instead (JSON Lines, or YAML documents)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if output != "table":
        return _follow_records(settings, job_id, output)
    console = console or Console()
    job = _reading(settings, job_id)
    columns = (TextColumn("[bold]{task.fields[state]:<10}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("{task.description}"))
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task(job.status, total=job.total, completed=job.current, state=str(job.state))
        while not job.terminal:
            time.sleep(POLL_SECONDS)
            job = _reading(settings, job_id)
            progress.update(bar, description=job.status, completed=job.current, state=str(job.state))
    report(job, console)
    return 0 if job.state == JobState.COMPLETED else 1


def _follow_records(settings: Settings, job_id: str, output: str) -> int:
    import json

    last: dict[str, object] | None = None
    while True:
        job = _reading(settings, job_id)
        record = job.as_dict()
        changed = {k: v for k, v in record.items() if k != "updated_at"}
        if changed != last:
            last = changed
            text = json.dumps(record, default=str, ensure_ascii=False) + "\n" if output == "json" else \
                "---\n" + dump(record, "yaml")
            sys.stdout.write(text)
            sys.stdout.flush()
        if job.terminal:
            return 0 if job.state == JobState.COMPLETED else 1
        time.sleep(POLL_SECONDS)


def report(job: JobRecord, console: Console) -> None:
    console.print(f"{job.id} {job.state}: {job.status}", highlight=False, soft_wrap=True)
    for fmt, path in job.outputs.items():
        console.print(f"  {fmt}: {path}", highlight=False, soft_wrap=True)
    for problem in job.errors:
        console.print(f"  problem: {problem}", highlight=False, soft_wrap=True)


def pause_job(args: argparse.Namespace) -> int:
    from bookgen_worker.jobs import store

    job = store.pause_job(connect(args)[1], args.job_id)
    print(f"{job.id} {job.state} at {job.current}/{job.total}; chapters already sent will finish")
    return 0


def resume_job(args: argparse.Namespace) -> int:
    from bookgen_worker.jobs import store

    app, settings = connect(args)
    job = store.resume_job(settings, args.job_id, celery_app=app)
    print(f"{job.id} {job.state} at {job.current}/{job.total}")
    return 0


def cancel_job(args: argparse.Namespace) -> int:
    from bookgen_worker.jobs import store

    app, settings = connect(args)
    job, revoked = store.cancel_job(settings, args.job_id, celery_app=app)
    print(f"{job.id} {job.state} at {job.current}/{job.total}; revoked {len(revoked)} queued task(s)")
    return 0


def _when(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def list_jobs(args: argparse.Namespace) -> int:
    from bookgen_worker.jobs import store
    from rich.table import Table

    _positive(args.limit, "--limit")
    jobs = store.list_jobs(connect(args)[1], limit=args.limit)
    if args.output != "table":
        sys.stdout.write(dump([job.as_dict() for job in jobs], args.output))
        return 0
    out = console()
    if not jobs:
        out.print("No jobs yet. Start one with `bookgen submit \"Ada Lovelace\" --chapters 5`.")
        return 0
    table = Table(title=f"{len(jobs)} latest job(s)")
    table.add_column("job id", no_wrap=True)  # whole, so it can be pasted into pause/resume/cancel
    for column in ("subject", "state", "progress", "status", "created (UTC)"):
        table.add_column(column)
    for job in jobs:
        table.add_row(job.id, job.subject, str(job.state), f"{job.current}/{job.total}", job.status,
                      _when(job.created_at))
    out.print(table)
    return 0
