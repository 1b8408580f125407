"""Pauses of Python's cyclic garbage collector, measured and made rare.

A collection of the oldest generation walks every tracked object with the GIL held: every thread
stops, the autoscaler's scheduler included. With 250 BookGenQueues the operator holds a few hundred
MB of kopf bodies and caches, and a full collection stalls each poll that falls into it. Measured
here (`bookgen_operator_gc_pause_seconds`, by generation); `settle()` moves everything alive after
start-up (modules, kopf's registry, our caches' first contents) into the permanent generation,
which collections no longer walk (gc.freeze: CPython's advice for long-lived processes).
"""

from __future__ import annotations

import gc
import time
from typing import Any

from prometheus_client import Histogram

GC_PAUSE = Histogram("bookgen_operator_gc_pause_seconds",
                     "Pauses of Python's cyclic garbage collector (every thread waits), by generation.",
                     ["generation"], buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
_started: list[float] = []


def _callback(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _started.append(time.perf_counter())
    elif _started:
        GC_PAUSE.labels(generation=str(info.get("generation"))).observe(time.perf_counter() - _started.pop())


def measure() -> None:
    """Observe every collection from now on (idempotent)."""
    if _callback not in gc.callbacks:
        gc.callbacks.append(_callback)


def settle() -> None:
    """Collect once, then freeze what survived (called when the operator has started)."""
    gc.collect()
    gc.freeze()
