"""The live terminal view of `bookgen up`: per pool pending, in flight, replicas, last decision.

Without a terminal (or with --no-view) the same facts are printed as one line per change, so logs
and tests can follow what the autoscaler did. The endpoints are printed once, above the view, and
not repeated in it. The view fits 80 columns: no cell wraps (a wrapped row makes a live display
jump); the decision, the only free text, is shortened with an ellipsis to what the terminal holds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypedDict

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from bookgen_operator.local.runtime import Endpoints


class PoolRow(TypedDict):
    """What the view shows of one pool (LocalRuntime.pool_rows)."""

    pool: str
    replicas: int  # running, not stopping
    stopping: int
    min: int
    max: int
    pending: int | None
    in_flight: int | None
    busy: int | None
    decision: str
    scaled_ago: float | None  # seconds since the pool last scaled


def _num(value: object) -> str:
    return "?" if value is None else str(value)


def replicas_cell(row: PoolRow) -> str:
    """`3+1 [1-4]`: running, stopping (if any), and the pool's bounds, in a few columns."""
    text = f"{row['replicas']}"
    if row.get("stopping"):
        text += f"+{row['stopping']}"
    return f"{text} [{row['min']}-{row['max']}]"


def pools_table(rows: Sequence[PoolRow], title: str = "") -> Table:
    table = Table(title=title or None, expand=True, title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1))
    table.add_column("pool", style="bold", no_wrap=True)
    table.add_column("workers", justify="right", no_wrap=True)
    table.add_column("busy", justify="right", no_wrap=True)
    table.add_column("pending", justify="right", no_wrap=True)
    table.add_column("in flight", justify="right", no_wrap=True)
    table.add_column("last decision", ratio=1, no_wrap=True, overflow="ellipsis", min_width=10)
    for row in rows:
        decision = row.get("decision") or ""
        decision = decision.removeprefix(f"{row['pool']}: ")  # the row already names the pool
        if row.get("scaled_ago") is not None:
            decision = f"[{row['scaled_ago']:.0f}s ago] {decision}"
        # Text, not strings: a reason like "[1..4]" must not be read as rich markup.
        table.add_row(Text(row["pool"]), Text(replicas_cell(row)), _num(row.get("busy")), _num(row.get("pending")),
                      _num(row.get("in_flight")), Text(decision, no_wrap=True, overflow="ellipsis"))
    return table


def header(endpoints: Endpoints, state_dir: str) -> list[str]:
    """The lines `bookgen up` prints once when it has started (the redis URL is redacted)."""
    lines = [f"state folder {state_dir}", f"redis {endpoints.redis}"]
    if endpoints.flower:
        lines.append(f"flower {endpoints.flower} (login in {endpoints.flower_auth_file})")
    if endpoints.metrics:
        lines.append(f"metrics {endpoints.metrics}")
    lines.append(f"output {endpoints.output_dir}")
    return lines


def screen(rows: Sequence[PoolRow], extra: RenderableType | None = None) -> Group:
    parts: list[RenderableType] = [pools_table(rows, "worker pools (Ctrl-C stops)")]
    if extra is not None:
        parts.append(extra)
    return Group(*parts)


class LineReporter:
    """Plain output: one line whenever a pool's replicas or decision change."""

    def __init__(self, echo: Callable[[str], None]) -> None:
        self.echo = echo
        self.last: dict[str, tuple[int, str]] = {}

    def update(self, rows: Sequence[PoolRow]) -> None:
        for row in rows:
            key = (row["replicas"], row.get("decision"))
            if self.last.get(row["pool"]) != key and row.get("decision"):
                self.last[row["pool"]] = key
                self.echo(f"pool {row['pool']}: replicas {row['replicas']}, busy {_num(row.get('busy'))}, "
                          f"pending {_num(row.get('pending'))}, in flight {_num(row.get('in_flight'))} | "
                          f"{row['decision']}")
