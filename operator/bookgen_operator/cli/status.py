"""`bookgen status`: per-queue pending / in flight / oldest age, and the pools' workers, as tables.

The numbers come from the same measure() the exporter and the autoscaler use, read live from Redis.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from bookgen_worker.queues import QUEUES

from .connect import add_output_option, connect, console, dump

if TYPE_CHECKING:
    from bookgen_worker.metrics.measure import Snapshot
    from bookgen_worker.metrics.workers import WorkerInfo
    from rich.table import Table


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("status", help="per-queue pending, in-flight and oldest age; workers per pool")
    add_output_option(parser, json_alias=True)
    parser.add_argument("--queue", action="append", dest="queues", metavar="NAME",
                        help="only this queue (repeatable); default: all")
    parser.set_defaults(handler=show_status)


def format_age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def queue_table(snapshot: Snapshot) -> Table:
    from rich.table import Table

    table = Table(title="Queues")
    table.add_column("queue")
    for column in ("pending", "in flight", "oldest age"):
        table.add_column(column, justify="right")
    for name, depth in snapshot.queues.items():
        table.add_row(name, str(depth.pending), str(depth.in_flight), format_age(depth.oldest_pending_age))
    total_pending = sum(d.pending for d in snapshot.queues.values())
    total_in_flight = sum(d.in_flight for d in snapshot.queues.values())
    table.add_row("[bold]total[/bold]", str(total_pending), str(total_in_flight), "", end_section=True)
    table.caption = f"dead letters: {snapshot.dead_letters}"
    return table


def worker_table(workers: list[WorkerInfo]) -> Table:
    from rich.table import Table

    table = Table(title="Workers")
    for column in ("pool", "worker", "queues"):
        table.add_column(column)
    table.add_column("busy / slots", justify="right")
    for worker in workers:
        table.add_row(worker.pool, worker.hostname, ",".join(worker.queues), f"{worker.busy} / {worker.concurrency}")
    return table


def show_status(args: argparse.Namespace) -> int:
    from bookgen_worker.metrics.measure import measure
    from bookgen_worker.metrics.workers import read_workers
    from bookgen_worker.redis_client import get_redis

    queues = args.queues or list(QUEUES)
    unknown = [q for q in queues if q not in QUEUES]
    if unknown:
        raise ValueError(f"unknown queue(s) {', '.join(unknown)}; known: {', '.join(QUEUES)} (after `status`, "
                         "--queue filters these; a BookGenQueue is named before it: bookgen --queue NAME status)")
    _, settings = connect(args)
    client = get_redis(settings)
    snapshot = measure(client, settings, queues)
    workers = read_workers(client, settings)
    if args.output != "table":
        data = snapshot.to_dict()
        data["workers"] = [{**vars(w), "queues": list(w.queues)} for w in workers]
        sys.stdout.write(dump(data, args.output))
        return 0
    out = console()
    out.print(queue_table(snapshot))
    if workers:
        out.print(worker_table(workers))
    else:
        out.print("No worker has reported in the last 10 s.")
    return 0
