"""The live view's table and the plain-line reporter used without a terminal."""

from __future__ import annotations

from bookgen_operator.local.view import LineReporter, header, pools_table, screen
from rich.console import Console

ROW = {"pool": "content", "replicas": 3, "stopping": 1, "min": 1, "max": 4, "pending": 12, "in_flight": 4,
       "busy": 2, "decision": "content: 1 → 3 (12 pending + 4 in flight)", "scaled_ago": 2.4}


def test_the_table_shows_each_pool_s_numbers_and_last_decision() -> None:
    console = Console(width=160, record=True)
    console.print(pools_table([ROW]))
    text = console.export_text()
    assert "content" in text and "3+1 [1-4]" in text
    assert "[2s ago] 1 → 3 (12 pending + 4 in flight)" in text  # without the pool's name again


def test_the_live_view_fits_80_columns_one_line_per_pool() -> None:
    long = {**ROW, "decision": "content: 1 → 4 " + "(because " * 30}
    rows = [long, {**ROW, "pool": "validation"}, {**ROW, "pool": "export", "replicas": 12, "max": 20,
                                                   "pending": 123456, "in_flight": 99999}]
    console = Console(width=80, record=True)
    console.print(screen(rows))
    lines = console.export_text().splitlines()
    assert all(len(line) <= 80 for line in lines)
    pool_lines = [line for line in lines if line.lstrip().startswith(("content", "validation", "export"))]
    assert len(pool_lines) == 3  # nothing wrapped onto a second line
    assert "…" in pool_lines[0] and "123456" in pool_lines[2]  # a long decision is shortened, numbers kept


def test_the_endpoints_are_not_part_of_the_live_view() -> None:
    class Endpoints:
        redis, flower, flower_auth_file = "redis://:***@127.0.0.1:6380/0", "", ""
        metrics, output_dir = "http://127.0.0.1:9808/metrics", "/tmp/out"

    assert header(Endpoints(), "/tmp/state")[:2] == ["state folder /tmp/state", "redis redis://:***@127.0.0.1:6380/0"]
    console = Console(width=80, record=True)
    console.print(screen([ROW]))
    assert "redis" not in console.export_text()  # printed once above the view, not in every frame


def test_lines_are_printed_only_when_something_changed() -> None:
    lines: list[str] = []
    reporter = LineReporter(lines.append)
    reporter.update([ROW])
    reporter.update([ROW])
    reporter.update([{**ROW, "replicas": 4}])
    assert len(lines) == 2
    assert lines[1].startswith("pool content: replicas 4, busy 2, pending 12, in flight 4 | content: 1 → 3")
