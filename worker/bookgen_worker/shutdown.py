"""A warm shutdown that cannot hang on an unreachable Redis.

SIGTERM (the kubelet stopping a pod, `bookgen up` scaling in) starts Celery's warm shutdown: the
worker stops taking tasks and exits once the running ones are done. But the main loop can be stuck
in a publish that retries for as long as the broker is away: with events on (Flower turns them on),
Celery's worker heartbeat publishes with kombu's default retry policy, which never gives up. Seen on
the real node: a queue deleted with its namespace took its Redis away, its workers' heartbeats
retried for ever, and their pods ignored SIGTERM until the grace period (an hour) ran out.

So, once shutdown has begun, a watchdog thread ends the process when no task is running any more
and the main loop still has not finished after `GRACE` seconds. Ending then loses nothing: a task
that was not running was not taken (or, delivered and unacknowledged, comes back from Redis), and a
running task is always waited for, as the warm shutdown promises.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from celery import signals

logger = logging.getLogger(__name__)

#: Seconds the warm shutdown may take once no task runs any more.
GRACE = 10.0
POLL = 0.5


def _no_task_running() -> bool:
    from celery.worker import state

    return not state.active_requests


def watch(grace: float = GRACE, poll: float = POLL, exit_: Any = os._exit) -> threading.Thread:
    """Start the watchdog (a daemon thread: a shutdown that completes ends it with the process)."""

    def run() -> None:
        idle_since: float | None = None
        while True:
            if _no_task_running():
                idle_since = idle_since or time.monotonic()
                if time.monotonic() - idle_since >= grace:
                    logger.warning("warm shutdown still blocked %.0f s after the last task (Redis unreachable?): "
                                   "exiting", grace)
                    logging.shutdown()
                    exit_(0)
                    return
            else:
                idle_since = None
            time.sleep(poll)

    thread = threading.Thread(target=run, name="bookgen-shutdown-watchdog", daemon=True)
    thread.start()
    return thread


def _on_shutting_down(sig: Any = None, how: str = "", **_: Any) -> None:
    """Celery's SIGTERM/SIGINT handler announces the shutdown; a cold one (SIGQUIT) needs no help."""
    if how == "Warm":
        watch()


signals.worker_shutting_down.connect(_on_shutting_down, weak=False)
