"""`bookgen dlq list|show|replay|purge`: look into the dead-letter queue and act on it."""

from __future__ import annotations

import argparse
import datetime as dt
import json

from rich.console import Console
from rich.table import Table

from .. import deadletter
from ..app import app, bookgen_settings
from ..config import Settings
from ..errors import BookGenError
from ..redis_client import check_reachable


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    dlq = subparsers.add_parser("dlq", help="list, show, replay or purge dead-lettered tasks")
    actions = dlq.add_subparsers(dest="dlq_action", metavar="ACTION", required=True)

    listing = actions.add_parser("list", help="one line per dead-lettered task, oldest first")
    listing.add_argument("--archive", action="store_true", help="list the archived entries instead")
    listing.set_defaults(handler=list_entries)

    show = actions.add_parser("show", help="everything recorded about one task, including the traceback")
    show.add_argument("task_id")
    show.set_defaults(handler=show_entry)

    replay = actions.add_parser("replay", help="send tasks again with their original queue and priority")
    replay.add_argument("task_ids", nargs="*", metavar="TASK_ID")
    replay.add_argument("--all", action="store_true", help="replay every entry")
    replay.set_defaults(handler=replay_entries)

    purge = actions.add_parser("purge", help="delete every entry (the archive is kept)")
    purge.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    purge.set_defaults(handler=purge_entries)


def _settings() -> Settings:
    settings = bookgen_settings(app)
    check_reachable(settings)
    return settings


def _when(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def list_entries(args: argparse.Namespace) -> int:
    entries = deadletter.entries(_settings(), archive=args.archive)
    console = Console()
    if not entries:
        console.print("The dead-letter queue is empty.")
        return 0
    table = Table(title=f"{len(entries)} dead-lettered task(s)")
    for column in ("task id", "task", "queue", "attempts", "failed at (UTC)", "error"):
        table.add_column(column)
    for entry in entries:
        table.add_row(
            entry.task_id, entry.task_name, entry.queue, str(entry.attempts), _when(entry.failed_at),
            f"{entry.exception_type}: {entry.exception_message}"[:80],
        )
    console.print(table)
    return 0


def show_entry(args: argparse.Namespace) -> int:
    entry = deadletter.get(_settings(), args.task_id)
    if entry is None:
        raise BookGenError(f"no dead-letter entry with task id {args.task_id!r} (see `bookgen dlq list`)")
    record = {key: value for key, value in vars(entry).items() if key != "traceback"}
    print(json.dumps(record, indent=2, default=str))
    print("\nTraceback:\n" + entry.traceback)
    return 0


def replay_entries(args: argparse.Namespace) -> int:
    settings = _settings()
    task_ids = [entry.task_id for entry in deadletter.entries(settings)] if args.all else args.task_ids
    if not task_ids:
        raise BookGenError("name the task ids to replay, or pass --all")
    for task_id in task_ids:
        try:
            new_id = deadletter.replay(app, settings, task_id)
        except LookupError as exc:
            raise BookGenError(str(exc)) from None
        print(f"replayed {task_id} as {new_id}")
    return 0


def purge_entries(args: argparse.Namespace) -> int:
    settings = _settings()
    if not args.yes:
        count = deadletter.size(settings)
        answer = input(f"Delete {count} dead-letter entr{'y' if count == 1 else 'ies'}? [y/N] ")
        if answer.strip().lower() not in {"y", "yes"}:
            print("Nothing deleted.")
            return 1
    print(f"purged {deadletter.purge(settings)} entr(ies)")
    return 0
