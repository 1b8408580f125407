"""`bookgen.bench.sleep`, the task bench/real_autoscale.py replays on real worker pods.

Not imported as part of the `bench` package there: the benchmark puts this file in a ConfigMap that is
mounted into the content pool's pods, on PYTHONPATH, and named in BOOKGEN_EXTRA_TASK_MODULES (the
app's hook for extra task modules), so the task runs on the unchanged product image with the product's
acks_late, retry and shutdown behaviour. Each attempt records its start and its end, with the pod, in
two Redis lists; the benchmark reads them to get every task's wait, which pod ran it, and whether a
task ran twice or was cut short.
"""

from __future__ import annotations

import json
import os
import socket
import time

from bookgen_worker.app import app, bookgen_settings
from bookgen_worker.redis_client import get_redis
from bookgen_worker.tasks.base import bookgen_task

STARTS = "bench:starts"
ENDS = "bench:ends"
NAME = "bookgen.bench.sleep"


def _note(key: str, which: str) -> None:
    pod = os.environ.get("POD_NAME") or socket.gethostname()
    get_redis(bookgen_settings(app)).rpush(which, json.dumps({"key": key, "pod": pod, "at": time.time()}))


@bookgen_task("bench.sleep")
def sleep(self, key: str, seconds: float) -> None:  # type: ignore[no-untyped-def]
    """Stand in for a chapter of `seconds`: note the start, sleep, note the end."""
    _note(key, STARTS)
    time.sleep(seconds)
    _note(key, ENDS)
