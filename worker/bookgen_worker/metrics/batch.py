"""Metric increments summed in process memory and written to Redis off the hot path.

A task used to cost 6 Redis commands in 2 round trips for its counters and runtime. Now the signal
handlers only add to a dict, or, on a task's hot path, append one precomputed `Slot` (what one event
of one label set adds: its hash fields, and a histogram it observes a value in) to a deque, which is
atomic under the GIL and so needs no lock; the flush expands the slots into sums. A daemon thread of
each process writes the sums about every second in one MULTI/EXEC (HINCRBY / HINCRBYFLOAT), and
the process flushes what is left when it stops: pool children on `worker_process_shutdown` (warm
shutdown, max-tasks-per-child recycling), the main process on `worker_shutdown`, any other process
(a CLI that sends tasks) at exit.

Counts stay exact: a batch is taken out of the buffer only by the flush that writes it, and a flush
that fails puts it back (MULTI/EXEC applies all of it or none), so an unreachable Redis delays
numbers instead of losing them. After a fork the child starts with an empty buffer (the parent
still owns and flushes what it had) and its own thread.
"""

from __future__ import annotations

import atexit
import bisect
import logging
import os
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import redis

logger = logging.getLogger(__name__)

#: Seconds between flushes.
FLUSH_INTERVAL = 1.0
#: A buffer this large is kept even while Redis is down; past it, the oldest values would be at risk,
#: so we log loudly (the buffer is per label set, so it only grows with new label sets, not with tasks).
WARN_FIELDS = 50_000

Amount = int | float
#: (hash key, field) -> amount to add
Pending = dict[tuple[str, str], Amount]


@dataclass(frozen=True, eq=False)
class Histogram:
    """A histogram's fields in one Redis hash: `<base><bucket label>`, `<base>count`, `<base>sum`."""

    name: str
    base: str
    #: upper bounds, ascending, the last one +inf; labels[i] is the field suffix of bounds[i]
    bounds: tuple[float, ...]
    labels: tuple[str, ...]

    def bucket(self, value: float) -> str:
        """The label of the first bucket with value <= bound (NaN: the last, like a linear scan)."""
        index = bisect.bisect_left(self.bounds, value)
        return self.labels[index if index < len(self.labels) and value == value else -1]


@dataclass(frozen=True, eq=False)
class Slot:
    """Everything one event of one label set adds, built once, so a handler only records the slot."""

    url: str
    client: Callable[[], redis.Redis]
    #: (hash key, field, amount) added per event
    increments: tuple[tuple[str, str, Amount], ...]
    #: where a value recorded with the event is observed (None: the slot takes no value)
    histogram: Histogram | None = None


def expand(slot: Slot, value: float | None, pending: Pending) -> None:
    """Add one recorded event to `pending` (the caller holds the lock that guards it)."""
    for name, field, amount in slot.increments:
        pending[(name, field)] = pending.get((name, field), 0) + amount
    histogram = slot.histogram
    if histogram is not None and value is not None:
        name, base = histogram.name, histogram.base
        for field, amount in ((base + histogram.bucket(value), 1), (base + "count", 1), (base + "sum", float(value))):
            pending[(name, field)] = pending.get((name, field), 0) + amount


def write(client: redis.Redis, pending: Pending) -> None:
    """Apply `pending` in one MULTI/EXEC round trip (a zero amount creates the field at 0)."""
    with client.pipeline(transaction=True) as pipe:
        for (name, field), amount in pending.items():
            if isinstance(amount, float):
                pipe.hincrbyfloat(name, field, amount)
            else:
                pipe.hincrby(name, field, amount)
        pipe.execute()


def merge(into: Pending, other: Pending) -> None:
    for slot, amount in other.items():
        into[slot] = into.get(slot, 0) + amount


class Batcher:
    """Sums increments per Redis client; flushes them from a thread of the current process."""

    def __init__(self, interval: float = FLUSH_INTERVAL) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._pending: dict[str, Pending] = {}  # redis url -> pending increments
        self._events: deque[tuple[Slot, float | None]] = deque()  # recorded, not yet expanded into _pending
        self._clients: dict[str, Callable[[], redis.Redis]] = {}
        self._pid = os.getpid()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        os.register_at_fork(after_in_child=self._after_fork)
        atexit.register(self.flush)

    def _after_fork(self) -> None:
        # The lock may have been held by another thread at fork time: replace it, do not reuse it.
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._pending = {}
        self._events = deque()
        self._pid = os.getpid()
        self._thread = None
        self._stop = threading.Event()

    def add(self, url: str, client: Callable[[], redis.Redis], name: str, field: str, amount: Amount = 1) -> None:
        with self._lock:
            pending = self._pending.setdefault(url, {})
            pending[(name, field)] = pending.get((name, field), 0) + amount
            self._clients.setdefault(url, client)
            if self._thread is None:
                self._start()

    def record(self, slot: Slot, value: float | None = None) -> None:
        """The hot path: one event of `slot` (and a value for its histogram). No lock: deque.append is
        atomic, and the flush takes events out with popleft, so none is lost or counted twice."""
        self._events.append((slot, value))
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._start()

    def _expand_events(self) -> None:
        """Move recorded events into the pending sums; the caller holds self._lock."""
        events, popleft = self._events, self._events.popleft
        while events:
            slot, value = popleft()  # only flushes pop, under self._lock: never empty here
            self._clients.setdefault(slot.url, slot.client)
            expand(slot, value, self._pending.setdefault(slot.url, {}))

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="bookgen-metrics-flush", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        stop = self._stop
        while not stop.wait(self.interval):
            self.flush()

    def flush(self) -> bool:
        """Write everything buffered; True when nothing is left. Never raises."""
        with self._flush_lock:
            with self._lock:
                self._expand_events()
                batches, self._pending = self._pending, {}
            ok = True
            for url, pending in batches.items():
                if not pending:
                    continue
                try:
                    write(self._clients[url](), pending)
                except Exception as exc:  # Redis down: keep the batch for the next flush, never fail a task
                    ok = False
                    logger.warning("could not write %d task metric values to Redis (kept for later): %s",
                                   len(pending), exc)
                    with self._lock:
                        merge(self._pending.setdefault(url, {}), pending)
                        if len(self._pending[url]) > WARN_FIELDS:
                            logger.error("metrics buffer holds %d values: Redis unreachable for long",
                                         len(self._pending[url]))
            return ok

    def discard(self) -> None:
        """Drop everything buffered (tests: a new test's Redis must not receive the last test's counts)."""
        with self._flush_lock, self._lock:
            self._pending = {}
            self._events.clear()

    def pending_count(self) -> int:
        with self._lock:
            self._expand_events()
            return sum(len(p) for p in self._pending.values())


BATCHER = Batcher()
