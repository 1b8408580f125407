"""The live view's table and the plain-line reporter used without a terminal."""

from __future__ import annotations

from bookgen_operator.local.view import LineReporter, pools_table
from rich.console import Console

ROW = {"pool": "content", "replicas": 3, "stopping": 1, "min": 1, "max": 4, "pending": 12, "in_flight": 4,
       "busy": 2, "decision": "content: 1 → 3 (12 pending + 4 in flight)", "scaled_ago": 2.4}


def test_the_table_shows_each_pool_s_numbers_and_last_decision() -> None:
    console = Console(width=160, record=True)
    console.print(pools_table([ROW]))
    text = console.export_text()
    assert "content" in text and "3 (+1 stopping)  [1..4]" in text
    assert "[scaled 2 s ago] content: 1 → 3 (12 pending + 4 in flight)" in text


def test_lines_are_printed_only_when_something_changed() -> None:
    lines: list[str] = []
    reporter = LineReporter(lines.append)
    reporter.update([ROW])
    reporter.update([ROW])
    reporter.update([{**ROW, "replicas": 4}])
    assert len(lines) == 2
    assert lines[1].startswith("pool content: replicas 4, busy 2, pending 12, in flight 4 | content: 1 → 3")
