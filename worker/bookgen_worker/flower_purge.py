"""Flower that forgets workers that went away, in every view: `python -m bookgen_worker.flower_purge
<celery flower arguments>`, run by `python -m bookgen_worker.flower` when a purge period is set.

Under autoscaling every scale-out brings workers with new names (the pod's), and Flower keeps every
name it has seen: its own `--purge_offline_workers` hides them only from the /workers page and its
metrics, while /api/workers (the inspector's cache) and the events state keep them for ever
(mher/flower #612, #1128). So, beside passing that option on, a timer in Flower's own loop drops a
worker from the events state, the counters and the inspector's cache once it has been offline for the
period; a worker that comes back is simply seen again.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger(__name__)

OPTION = "--purge_offline_workers="


def last_seen(worker: Any) -> float | None:
    """When Celery's state last heard from a worker (its latest heartbeat, else its last event)."""
    heartbeats = list(getattr(worker, "heartbeats", None) or [])
    return max(heartbeats) if heartbeats else getattr(worker, "timestamp", None)


def forget_offline(app: Any, period: float, now: float) -> list[str]:
    """Drop from a Flower application every worker offline for `period` seconds or more; their names."""
    state = app.events.state
    gone = []
    for name, worker in list(state.workers.items()):
        if worker.alive:
            continue
        seen = last_seen(worker)
        if seen is None or now - seen >= period:
            gone.append(name)
    for name in gone:
        state.workers.pop(name, None)
        state.counter.pop(name, None)
        app.inspector.workers.pop(name, None)
    if gone:
        app.purge_offline_worker_metrics()
        log.info("forgot %d offline workers: %s", len(gone), ", ".join(sorted(gone)))
    return gone


def purge_period(argv: Sequence[str]) -> int | None:
    """The period given to Flower (`--purge_offline_workers=N`), None without one."""
    values = [arg[len(OPTION):] for arg in argv if arg.startswith(OPTION)]
    return int(values[-1]) if values and values[-1].isdigit() and int(values[-1]) > 0 else None


def install(period: int, clock: Callable[[], float] = time.time) -> None:
    """Add the timer to every Flower application started in this process."""
    from flower.app import Flower
    from tornado.ioloop import PeriodicCallback

    original = Flower.start

    def start(self: Any) -> None:
        def tick() -> None:
            forget_offline(self, period, clock())

        # A quarter of the period: a worker is gone between period and 1.25 x period after it left.
        PeriodicCallback(tick, max(1000.0, period * 1000 / 4)).start()
        original(self)

    Flower.start = start


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    period = purge_period(args)
    if period is not None:
        install(period)
    from celery.bin.celery import main as celery_main

    sys.argv = ["celery", *args]
    celery_main()


if __name__ == "__main__":
    main()
