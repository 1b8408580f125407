"""Time from a burst being enqueued to the first *new* worker consuming it, under `bookgen up`.

    .venv/bin/python -m bench.burst_latency [--rounds 3] [--polls 1,5]

Each round starts a fresh `bookgen up` (its own Redis, a content pool at 1 worker, max 2), enqueues a
burst of 100 half-second tasks, and reads when the autoscaler started a second worker (the platform's
event log) and when that worker started its first task (the task's own record). Printed beside the
baseline: the cold start of a worker alone (spawn -> first task), the floor that no poll interval
can beat. Expect about: poll interval / 2 (waiting for the next poll) + the cold start.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tests.local.conftest import Up, spec_yaml, start_up
from tests.support.waiting import wait_for


def one_round(poll: float, workdir: Path) -> tuple[float, float, float]:
    """(enqueue -> scale decision, decision -> first task on the new worker, total) in seconds."""
    up: Up = start_up(workdir / "state", spec_yaml(content_max=2, scale_down_window=max(60, poll), poll=poll))
    try:
        up.wait_ready(2)
        # Let the autoscaler settle at the minimum (its first decisions happen at start).
        time.sleep(poll * 1.5)
        first = next(e["pod"] for e in up.events() if e["pool"] == "content" and e["event"] == "start")
        labels = [f"b{i}" for i in range(100)]
        enqueued = time.time()
        up.send_probes(labels, 0.5)

        def new_worker_start() -> dict | None:
            return next((e for e in up.events() if e["pool"] == "content" and e["event"] == "start"
                         and e["pod"] != first), None)

        started = wait_for(new_worker_start, timeout=poll * 3 + 60, interval=0.02, what="a second worker")
        hostname = f"content-{started['pod'].rsplit('-', 1)[1]}@"

        def first_task() -> float | None:
            return next((e["at"] for e in up.probe_events() if e["hostname"].startswith(hostname)), None)

        consumed = wait_for(first_task, timeout=60, interval=0.02, what="the new worker's first task")
        return started["at"] - enqueued, consumed - started["at"], consumed - enqueued
    finally:
        up.stop()


def _cell(figures: list[tuple[float, float, float]], i: int, width: int) -> str:
    values = [f[i] for f in figures]
    return f"{statistics.median(values):6.2f} [{min(values):.2f}..{max(values):.2f}]".rjust(width)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--polls", default="1,5", help="poll intervals in seconds, comma-separated")
    args = parser.parse_args(argv)
    polls = [float(p) for p in args.polls.split(",")]
    print(f"burst of 100 x 0.5 s tasks on the content pool (1 -> 2 workers), {args.rounds} round(s) each; "
          "median [min..max] seconds", flush=True)
    print(f"{'poll interval':>14} | {'enqueue->decision':>20} | {'cold start':>20} | {'enqueue->new worker':>22}")
    for poll in polls:
        figures = []
        for _ in range(args.rounds):
            with tempfile.TemporaryDirectory(prefix="bookgen-bench-") as tmp:
                figures.append(one_round(poll, Path(tmp)))

        print(f"{poll:>12g} s | {_cell(figures, 0, 20)} | {_cell(figures, 1, 20)} | {_cell(figures, 2, 22)}",
              flush=True)
    print("baseline: the cold-start column alone is the floor (a worker spawned at the instant of the burst);"
          " the enqueue->decision column is what the poll interval adds (about poll/2 on average).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
