"""The stock Celery side of the throughput benchmark: nothing of BookGen is imported here.

Celery's signals are process-wide, so importing any BookGen module would connect our metrics handlers
to this app too and make the baseline pay for them.
"""

from __future__ import annotations

import os

from celery import Celery

#: Celery with nothing but a broker: its defaults (prefetch 4, early acks, no priorities, no results).
stock = Celery("stock", broker=os.environ.get("REDIS_URL", "redis://localhost:6379/0"))

#: BENCH_STOCK_RELIABLE=1: stock Celery with only our reliability settings, to show what they cost alone.
if os.environ.get("BENCH_STOCK_RELIABLE") == "1":
    stock.conf.update(task_acks_late=True, task_reject_on_worker_lost=True, worker_prefetch_multiplier=1)

#: BENCH_STOCK_RESULTS=1: stock Celery storing every result in Redis, the baseline for our direct calls'
#: row (their result is stored because a caller may read it).
if os.environ.get("BENCH_STOCK_RESULTS") == "1":
    stock.conf.update(result_backend=os.environ.get("REDIS_URL", "redis://localhost:6379/0"))


@stock.task(name="bench.stock_noop")
def stock_noop() -> None:
    """The same nothing as bench.noop_tasks.noop, on Celery's defaults."""
