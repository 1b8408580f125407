"""No-op tasks for the throughput benchmark: one on the BookGen app, one on a stock Celery app."""

from __future__ import annotations

import os

from bookgen_worker.tasks.base import bookgen_task
from celery import Celery


@bookgen_task("bench.noop")
def noop(self) -> None:  # type: ignore[no-untyped-def]
    """Does nothing, so the figure measures the queue machinery alone."""


#: Celery with nothing but a broker: its defaults (prefetch 4, early acks, no priorities).
stock = Celery("stock", broker=os.environ.get("REDIS_URL", "redis://localhost:6379/0"))


@stock.task(name="bench.stock_noop")
def stock_noop() -> None:
    """The same nothing, on Celery's defaults."""
