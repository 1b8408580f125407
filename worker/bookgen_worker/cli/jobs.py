"""`bookgen submit|watch|pause|resume|cancel|jobs`: whole-book jobs from the command line."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..app import app, bookgen_settings
from ..config import Settings
from ..jobs import store
from ..jobs.records import DEFAULT_PARALLEL, DEFAULT_TARGET_WORDS, JobRecord
from ..jobs.states import JobState
from ..queues import DEFAULT_PRIORITY
from ..redis_client import check_reachable

#: How often `watch` reads the job hash (one HGETALL; cheap).
POLL_SECONDS = 0.2


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
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
    submit.set_defaults(handler=submit_job)

    watch = subparsers.add_parser("watch", help="show a job's progress until it ends")
    watch.add_argument("job_id")
    watch.set_defaults(handler=watch_job)

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
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(handler=list_jobs)


def _settings() -> Settings:
    settings = bookgen_settings(app)
    check_reachable(settings)  # one line naming the (redacted) URL instead of a traceback
    return settings


def submit_job(args: argparse.Namespace) -> int:
    settings = _settings()
    job_id = store.submit_job(settings, args.subject, args.chapters, args.words, args.formats,
                              priority=args.priority, parallel=args.parallel, celery_app=app)
    print(job_id)
    return follow(settings, job_id) if args.wait else 0


def watch_job(args: argparse.Namespace) -> int:
    settings = _settings()
    store.get_job(settings, args.job_id)  # unknown id: a clear error before any progress bar
    return follow(settings, args.job_id)


def follow(settings: Settings, job_id: str, console: Console | None = None) -> int:
    """A progress bar until the job reaches a terminal state; exit status 0 only for COMPLETED."""
    console = console or Console()
    job = store.get_job(settings, job_id)
    columns = (TextColumn("[bold]{task.fields[state]:<10}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("{task.description}"))
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task(job.status, total=job.total, completed=job.current, state=str(job.state))
        while not job.terminal:
            time.sleep(POLL_SECONDS)
            job = store.get_job(settings, job_id)
            progress.update(bar, description=job.status, completed=job.current, state=str(job.state))
    report(job, console)
    return 0 if job.state == JobState.COMPLETED else 1


def report(job: JobRecord, console: Console) -> None:
    console.print(f"{job.id} {job.state}: {job.status}", highlight=False, soft_wrap=True)
    for fmt, path in job.outputs.items():
        console.print(f"  {fmt}: {path}", highlight=False, soft_wrap=True)
    for problem in job.errors:
        console.print(f"  problem: {problem}", highlight=False, soft_wrap=True)


def pause_job(args: argparse.Namespace) -> int:
    job = store.pause_job(_settings(), args.job_id)
    print(f"{job.id} {job.state} at {job.current}/{job.total}; chapters already sent will finish")
    return 0


def resume_job(args: argparse.Namespace) -> int:
    job = store.resume_job(_settings(), args.job_id, celery_app=app)
    print(f"{job.id} {job.state} at {job.current}/{job.total}")
    return 0


def cancel_job(args: argparse.Namespace) -> int:
    job, revoked = store.cancel_job(_settings(), args.job_id, celery_app=app)
    print(f"{job.id} {job.state} at {job.current}/{job.total}; revoked {len(revoked)} queued task(s)")
    return 0


def _when(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def list_jobs(args: argparse.Namespace) -> int:
    jobs = store.list_jobs(_settings(), limit=args.limit)
    if args.json:
        print(json.dumps([job.as_dict() for job in jobs], indent=2))
        return 0
    console = Console()
    if not jobs:
        console.print("No jobs yet. Start one with `bookgen submit \"Ada Lovelace\" --chapters 5`.")
        return 0
    table = Table(title=f"{len(jobs)} latest job(s)")
    table.add_column("job id", no_wrap=True)  # whole, so it can be pasted into pause/resume/cancel
    for column in ("subject", "state", "progress", "status", "created (UTC)"):
        table.add_column(column)
    for job in jobs:
        table.add_row(job.id, job.subject, str(job.state), f"{job.current}/{job.total}", job.status,
                      _when(job.created_at))
    console.print(table)
    return 0
