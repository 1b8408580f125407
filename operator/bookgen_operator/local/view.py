"""The live terminal view of `bookgen up`: per pool pending, in flight, replicas, last decision.

Without a terminal (or with --no-view) the same facts are printed as one line per change, so logs
and tests can follow what the autoscaler did.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text


def _num(value: Any) -> str:
    return "?" if value is None else str(value)


def pools_table(rows: Sequence[Mapping[str, Any]], title: str = "") -> Table:
    table = Table(title=title or None, expand=True, title_justify="left")
    table.add_column("pool", style="bold")
    table.add_column("replicas", justify="right")
    table.add_column("busy", justify="right")
    table.add_column("pending", justify="right")
    table.add_column("in flight", justify="right")
    table.add_column("last decision", ratio=1, overflow="fold")
    for row in rows:
        replicas = f"{row['replicas']}"
        if row.get("stopping"):
            replicas += f" (+{row['stopping']} stopping)"
        replicas += f"  [{row['min']}..{row['max']}]"
        decision = row.get("decision") or ""
        if row.get("scaled_ago") is not None:
            decision = f"[scaled {row['scaled_ago']:.0f} s ago] {decision}"
        # Text, not strings: a reason like "[1..4]" must not be read as rich markup.
        table.add_row(Text(row["pool"]), Text(replicas), _num(row.get("busy")), _num(row.get("pending")),
                      _num(row.get("in_flight")), Text(decision))
    return table


def header(endpoints: Any, state_dir: str) -> Text:
    lines = [f"state {state_dir}", f"redis {endpoints.redis}"]
    if endpoints.flower:
        lines.append(f"flower {endpoints.flower} (login in {endpoints.flower_auth_file})")
    if endpoints.metrics:
        lines.append(f"metrics {endpoints.metrics}")
    lines.append(f"output {endpoints.output_dir}")
    return Text("\n".join(lines), style="dim")


def screen(rows: Sequence[Mapping[str, Any]], endpoints: Any, state_dir: str,
           extra: RenderableType | None = None) -> Group:
    parts: list[RenderableType] = [header(endpoints, state_dir), pools_table(rows, "worker pools (Ctrl-C stops)")]
    if extra is not None:
        parts.append(extra)
    return Group(*parts)


class LineReporter:
    """Plain output: one line whenever a pool's replicas or decision change."""

    def __init__(self, echo: Any) -> None:
        self.echo = echo
        self.last: dict[str, tuple[Any, ...]] = {}

    def update(self, rows: Sequence[Mapping[str, Any]]) -> None:
        for row in rows:
            key = (row["replicas"], row.get("decision"))
            if self.last.get(row["pool"]) != key and row.get("decision"):
                self.last[row["pool"]] = key
                self.echo(f"pool {row['pool']}: replicas {row['replicas']}, busy {_num(row.get('busy'))}, "
                          f"pending {_num(row.get('pending'))}, in flight {_num(row.get('in_flight'))} | "
                          f"{row['decision']}")
