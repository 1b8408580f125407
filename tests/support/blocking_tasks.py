"""A test task that holds its worker slot until the test releases it (no sleeping on either side)."""

from __future__ import annotations

import os
import time

from bookgen_worker.app import app, bookgen_settings
from bookgen_worker.redis_client import get_redis
from bookgen_worker.tasks.base import bookgen_task

MODULE = "tests.support.blocking_tasks"
NAME = "bookgen.probe.block"
RELEASE_KEY = "probe:release"
STARTED_KEY = "probe:started"
#: label -> POD_NAME of the worker that runs it (the pod's name on Kubernetes).
STARTED_BY_KEY = "probe:started_by"
FINISHED_KEY = "probe:finished"


@bookgen_task("probe.block")
def block(self, label: str, limit: float = 120.0) -> str:  # type: ignore[no-untyped-def]
    client = get_redis(bookgen_settings(app))
    client.rpush(STARTED_KEY, label)
    client.hset(STARTED_BY_KEY, label, os.environ.get("POD_NAME", ""))
    deadline = time.monotonic() + limit
    while not client.exists(RELEASE_KEY) and time.monotonic() < deadline:
        time.sleep(0.02)
    client.rpush(FINISHED_KEY, label)
    return label
