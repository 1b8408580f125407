"""Pauses of Python's cyclic garbage collector, measured and made rare.

A collection of the oldest generation walks every tracked object with the GIL held: every thread
stops, the autoscaler's scheduler included. With 250 BookGenQueues the operator holds a few hundred
MB of kopf bodies and caches, and a full collection stalls each poll that falls into it. Measured
here (`bookgen_operator_gc_pause_seconds`, by generation). bench.operator_scale at 250 queues saw
651 collections a minute taking 4.1 s in all (two over 100 ms) at CPython's default thresholds
(700, 10, 10): kopf's bodies and the watch events make containers fast, and most die young by
reference counting anyway. With a young generation of 50,000 objects that fell to 3 a minute, but
one of them was a full collection of the ~400 MB heap: one pause of most of a second, which made
every queue's poll late once (250 late rounds, 98.3 % on time). `settle()` therefore collects the
young generation less often (50,000, as long-running servers commonly set), the oldest a tenth as
often as CPython would (a full collection every 100 of the middle one's: minutes apart at this
rate, so a second's stall costs well under 1 % of polls; the memory of cyclic garbage waits that
long), and moves everything alive after start-up (modules, kopf's registry) into the permanent
generation, which collections no longer walk (gc.freeze).

That left the one full collection that does come: over a 300 s window it was 4 collections, 1.2 s,
3 of them over 100 ms (98.6 % of polls on time), because the heap grows after start-up (kopf's
bodies and the child cache of every queue) and each full collection walked all of it again.
`settle()` therefore also freezes after every full collection: what survived one is long-lived by
every measure we have, and the next full collection walks only what has been promoted since. The
price is that cyclic garbage among frozen objects is never collected; reference counting still
frees everything else (kopf's bodies and cached children are trees of dicts, freed when replaced).
The RSS row of bench.operator_scale is the check that this stays flat: 433->438, 476->478 and
474->475 MiB over windows of 300, 600 and 120 s, with 100.0 / 99.9 / 100.0 % of polls on time.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Mapping

from prometheus_client import Histogram

GC_PAUSE = Histogram("bookgen_operator_gc_pause_seconds",
                     "Pauses of Python's cyclic garbage collector (every thread waits), by generation.",
                     ["generation"], buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))


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


def _freeze_survivors(phase: str, info: Mapping[str, int]) -> None:
    # The collection is over when "stop" runs: merging the generations into the permanent one is safe.
    if phase == "stop" and info.get("generation") == 2:
        gc.freeze()


def settle() -> None:
    """Collect once, freeze what survived, collect less often, and freeze again after every full
    collection (called when the operator has started; idempotent)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
    if _freeze_survivors not in gc.callbacks:
        gc.callbacks.append(_freeze_survivors)


def unsettle() -> None:
    """Undo settle() (for tests): CPython's thresholds, nothing frozen, no freezing callback."""
    if _freeze_survivors in gc.callbacks:
        gc.callbacks.remove(_freeze_survivors)
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
