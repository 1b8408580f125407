"""The no-op task of the throughput benchmark on the BookGen app (the stock one is in stock_tasks.py)."""

from __future__ import annotations

import os

from bookgen_worker.tasks.base import bookgen_task
from celery import signals

#: BENCH_METRICS_OFF=1: the metrics signal handlers are disconnected (sender and worker both import
#: this module), to show what the rest of the hot path costs.
if os.environ.get("BENCH_METRICS_OFF") == "1":
    for signal, uid in ((signals.after_task_publish, "bookgen-count-sent"),
                        (signals.task_prerun, "bookgen-runtime-start"),
                        (signals.task_postrun, "bookgen-runtime-end"),
                        (signals.task_success, "bookgen-count-succeeded"),
                        (signals.task_failure, "bookgen-count-failed"),
                        (signals.task_retry, "bookgen-count-retried")):
        signal.disconnect(dispatch_uid=uid)


@bookgen_task("bench.noop")
def noop(self) -> None:  # type: ignore[no-untyped-def]
    """Does nothing, so the figure measures the queue machinery alone."""
