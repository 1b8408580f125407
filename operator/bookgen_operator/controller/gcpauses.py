"""Pauses of Python's cyclic garbage collector, measured and made rare.

A collection of the oldest generation walks every tracked object with the GIL held: every thread
stops, the autoscaler's scheduler included. Measured here (`bookgen_operator_gc_pause_seconds`, by
generation). bench.operator_scale at 250 queues saw 651 collections a minute taking 4.1 s in all at
CPython's default thresholds (700, 10, 10): kopf's bodies and the watch events make containers fast,
and most die young by reference counting anyway. `settle()` therefore collects the young generation
less often (50,000, as long-running servers commonly set) and the oldest a tenth as often as CPython
would (a full collection every 100 of the middle one's), and moves what is alive at start-up
(modules, kopf's registry) into the permanent generation once, so collections no longer walk it
(gc.freeze).

Until issue 26 it also froze the survivors of every full collection, because a full collection of
the ~450 MB heap paused up to a second (98.6 % of polls on time over 300 s). That kept pauses short
but never freed cyclic garbage among anything that had once survived one. Collection is ordinary
again after start-up, and child_cache.py keeps the children as bytes, which the collector does not
walk. bench.operator_scale at 250 queues, 120 s window: 5 collections, 0.63 s in all, 2 over 100 ms,
the longest <= 500 ms, 98.1 % of polls on time on a loaded machine (load average 15 -> 7); the frozen
count stayed at its start-up value (bookgen_operator_gc_frozen_objects). Figures in docs/benchmarks.md.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Mapping

from prometheus_client import Gauge, Histogram

GC_PAUSE = Histogram("bookgen_operator_gc_pause_seconds",
                     "Pauses of Python's cyclic garbage collector (every thread waits), by generation.",
                     ["generation"], buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))

#: What settle() froze at start-up; a policy that froze survivors later would make it grow (the bench shows it).
GC_FROZEN = Gauge("bookgen_operator_gc_frozen_objects",
                  "Objects in the collector's permanent generation (gc.freeze), which collections do not walk.")
GC_FROZEN.set_function(gc.get_freeze_count)


class _PauseTimer:
    """Times each collection into GC_PAUSE. gc.callbacks is process-wide, so the one timer lives there
    (measure() finds it again) rather than in a module variable."""

    def __init__(self) -> None:
        self.started: list[float] = []

    def __call__(self, phase: str, info: Mapping[str, int]) -> None:
        if phase == "start":
            self.started.append(time.perf_counter())
        elif self.started:
            GC_PAUSE.labels(generation=str(info.get("generation"))).observe(time.perf_counter() - self.started.pop())


def measure() -> None:
    """Observe every collection from now on (idempotent)."""
    if not any(isinstance(callback, _PauseTimer) for callback in gc.callbacks):
        gc.callbacks.append(_PauseTimer())


#: gc.set_threshold for the operator: the young generation 70 times CPython's default, full collections
#: 10 times rarer.
THRESHOLDS = (50_000, 10, 100)


def settle() -> None:
    """Collect once, freeze what is alive at start-up (once: a later call freezes nothing more), and
    collect less often from then on (called when the operator has started)."""
    if gc.get_freeze_count() == 0:
        gc.collect()
        gc.freeze()
    gc.set_threshold(*THRESHOLDS)


def unsettle() -> None:
    """Undo settle() (for tests): CPython's thresholds, nothing frozen."""
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
