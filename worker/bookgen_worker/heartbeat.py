"""Liveness without `celery inspect ping`: a worker bootstep touches a file, a probe checks its age.

The worker's event loop refreshes a tick every few seconds; a thread touches the heartbeat file while
the tick is fresh, or while a task is running (a solo pool legitimately blocks its loop during a
task). A hung worker stops touching the file and `python -m bookgen_worker.heartbeat --check FILE
--max-age 60` fails, so Kubernetes restarts it.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from celery import bootsteps

logger = logging.getLogger(__name__)

TOUCH_INTERVAL = 5.0
#: The loop tick counts as fresh for this long (a prefork loop turns at least every few seconds).
LOOP_STALE_AFTER = 30.0


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    os.utime(path)


def check(path: Path, max_age: float, now: float | None = None) -> str | None:
    """None when healthy, else the reason."""
    try:
        age = (time.time() if now is None else now) - path.stat().st_mtime
    except FileNotFoundError:
        return f"heartbeat file {path} does not exist (worker not started?)"
    if age > max_age:
        return f"heartbeat file {path} is {age:.0f}s old (limit {max_age:.0f}s)"
    return None


class HeartbeatStep(bootsteps.StartStopStep):  # type: ignore[misc]
    """Touches BOOKGEN_HEARTBEAT_FILE (settings.heartbeat_file) while the worker is healthy."""

    requires = ("celery.worker.components:Timer", "celery.worker.components:Pool")

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self._stop = threading.Event()
        self._tick = time.monotonic()
        self._timer_entry: Any = None

    def include_if(self, worker: Any) -> bool:
        return worker.app.bookgen_settings.heartbeat_file is not None

    def start(self, worker: Any) -> None:
        path: Path = worker.app.bookgen_settings.heartbeat_file

        def tick() -> None:
            self._tick = time.monotonic()

        self._timer_entry = worker.timer.call_repeatedly(2.0, tick)

        def loop() -> None:
            from celery.worker import state

            while not self._stop.is_set():
                if time.monotonic() - self._tick < LOOP_STALE_AFTER or state.active_requests:
                    try:
                        touch(path)
                    except OSError as exc:
                        logger.warning("could not touch heartbeat file %s: %s", path, exc)
                self._stop.wait(TOUCH_INTERVAL)

        touch(path)
        threading.Thread(target=loop, name="bookgen-heartbeat", daemon=True).start()

    def stop(self, worker: Any) -> None:
        self._stop.set()
        if self._timer_entry is not None:
            with contextlib.suppress(Exception):
                self._timer_entry.cancel()

    shutdown = stop


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bookgen_worker.heartbeat", description=__doc__.splitlines()[0])
    parser.add_argument("--check", metavar="FILE", type=Path, required=True, help="heartbeat file to check")
    parser.add_argument("--max-age", type=float, default=60.0, help="seconds (default 60)")
    args = parser.parse_args(argv)
    problem = check(args.check, args.max_age)
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
