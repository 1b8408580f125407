"""`bookgen dlq list|show|replay|purge`: look into the dead-letter queue and act on it."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from dataclasses import asdict
from typing import TYPE_CHECKING

from bookgen_worker.errors import BookGenError

from .connect import add_output_option, connect, console, dump

if TYPE_CHECKING:
    from bookgen_worker.deadletter import DeadLetter


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dlq = subparsers.add_parser("dlq", help="list, show, replay or purge dead-lettered tasks")
    actions = dlq.add_subparsers(dest="dlq_action", metavar="ACTION", required=True)

    listing = actions.add_parser("list", help="one line per dead-lettered task, oldest first")
    listing.add_argument("--archive", action="store_true", help="list the archived entries instead")
    add_output_option(listing, json_alias=True)
    listing.set_defaults(handler=list_entries)

    show = actions.add_parser("show", help="everything recorded about one task, including the traceback")
    show.add_argument("task_id")
    add_output_option(show)
    show.set_defaults(handler=show_entry)

    replay = actions.add_parser("replay", help="send tasks again with their original queue and priority")
    replay.add_argument("task_ids", nargs="*", metavar="TASK_ID")
    replay.add_argument("--all", action="store_true", help="replay every entry")
    replay.set_defaults(handler=replay_entries)

    purge = actions.add_parser("purge", help="delete every entry (the archive is kept)")
    purge.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    purge.set_defaults(handler=purge_entries)


def _when(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def list_entries(args: argparse.Namespace) -> int:
    from bookgen_worker import deadletter
    from rich.table import Table

    entries = deadletter.entries(connect(args)[1], archive=args.archive)
    if args.output != "table":
        sys.stdout.write(dump([_record(entry) for entry in entries], args.output))
        return 0
    out = console()
    if not entries:
        out.print("The dead-letter queue is empty.")
        return 0
    table = Table(title=f"{len(entries)} dead-lettered task(s)")
    for column in ("task id", "task", "queue", "attempts", "failed at (UTC)", "error"):
        table.add_column(column)
    for entry in entries:
        table.add_row(
            entry.task_id, entry.task_name, entry.queue, str(entry.attempts), _when(entry.failed_at),
            f"{entry.exception_type}: {entry.exception_message}".splitlines()[0][:200],
        )
    out.print(table)
    return 0


def show_entry(args: argparse.Namespace) -> int:
    from bookgen_worker import deadletter

    entry = deadletter.get(connect(args)[1], args.task_id)
    if entry is None:
        raise BookGenError(f"no dead-letter entry with task id {args.task_id!r} (see `bookgen dlq list`)")
    if args.output != "table":
        sys.stdout.write(dump(_record(entry), args.output))
        return 0
    record = {key: value for key, value in vars(entry).items() if key != "traceback"}
    print(json.dumps(record, indent=2, default=str))
    print("\nTraceback:\n" + entry.traceback)
    return 0


def _record(entry: DeadLetter) -> dict[str, object]:
    """Plain data (JSON round trip: tuples become lists, odd objects their repr) for -o json|yaml."""
    record: dict[str, object] = json.loads(json.dumps(asdict(entry), default=repr))
    return record


def replay_entries(args: argparse.Namespace) -> int:
    from bookgen_worker import deadletter

    app, settings = connect(args)
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
    from bookgen_worker import deadletter

    settings = connect(args)[1]
    if not args.yes:
        count = deadletter.size(settings)
        try:
            answer = input(f"Delete {count} dead-letter entr{'y' if count == 1 else 'ies'}? [y/N] ")
        except EOFError:  # stdin closed or not a terminal: no answer is not a yes
            print()
            raise BookGenError("no answer on stdin; nothing deleted (pass --yes to purge without asking)") from None
        if answer.strip().lower() not in {"y", "yes"}:
            print("Nothing deleted.")
            return 1
    print(f"purged {deadletter.purge(settings)} entr(ies)")
    return 0
