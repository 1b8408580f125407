"""Exact queue depth: pending over every priority list, in flight from what live workers say they hold.

KEDA's Redis scaler and celery-exporter read one `LLEN` of the base list, so they miss the priority
sub-lists (`queue\\x06\\x163`, ...) and every task a worker has already taken (prefetched or running).
Counting only the base list makes an autoscaler shrink a busy fleet. Here one round trip (one Lua
script, measure_script.py, atomic like MULTI/EXEC) reads, for all queues at once:

- `LLEN` of every priority list (pending),
- the tail of every priority list: kombu pushes with LPUSH and pops with RPOP/BRPOP, so the right
  end holds the oldest message of each list (its `bookgen_sent_at` header gives the age),
- what live workers hold per queue (metrics/workers.py): running, reserved and ETA-held (scheduled)
  tasks. In flight = running + reserved. The registry keeps these summed over its load lines
  (registry_scripts.py), so the script reads the sums and subtracts only the lines that went stale:
  O(queues + pools + busy pods), where parsing every worker's line cost O(workers) (~1 ms of Redis
  time at 500 workers) and parsing kombu's `unacked` hash O(in flight) (1.3-1.8 s at 50,000 tasks),
- `HLEN unacked`: the O(1) total kombu holds, as a consistency check. `unaccounted` = that total
  minus what live workers hold: tasks of a worker that died (they come back only after the
  visibility timeout, so no new worker could take them now) or of a consumer outside the registry,
- `HLEN failed_tasks` (the dead-letter queue).

Tasks held for an ETA/countdown (retry backoff) are `scheduled`, never demand: no new worker can
take them before they are due. Registry entries of workers too old to publish a load line make the
measurement fall back to parsing `unacked` (one more round trip), so a rolling upgrade never counts
zero in flight.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from ..config import Settings
from ..queues import DEAD_LETTER_KEY, QUEUES, priority_list_keys
from .keys import WORKER_BUSY, WORKER_LOAD, WORKER_SEEN, WORKER_SUMS, WORKERS, key
from .measure_script import MEASURE_LUA
from .workers import LIVE_MAX_AGE, WorkerInfo

#: The script's digest: polls send EVALSHA and 40 bytes instead of EVAL and the 5 KB script, which
#: redis-py packs and Redis hashes on every call (250 queues polled every second: 1.4 MB/s of script).
MEASURE_SHA = hashlib.sha1(MEASURE_LUA.encode()).hexdigest()

#: Message header holding the publish time (epoch seconds), stamped by a before_task_publish handler.
SENT_AT_HEADER = "bookgen_sent_at"

#: kombu's hash of delivered-but-unacknowledged messages (prefixed with global_keyprefix, like all keys).
UNACKED_KEY = "unacked"


@dataclass(frozen=True)
class QueueDepth:
    queue: str
    pending: int  # sum of LLEN over every priority list
    in_flight: int  # running + reserved by live workers (demand)
    oldest_pending_age: float | None  # seconds, None when nothing pending (or no publish time known)
    running: int = 0  # accepted by a worker's pool
    reserved: int = 0  # taken by a worker, waiting there for a slot (prefetch)
    scheduled: int = 0  # held by a worker for an ETA/countdown: not demand

    @property
    def demand(self) -> int:
        return self.pending + self.in_flight


@dataclass(frozen=True)
class PoolLoad:
    """One pool's live workers, as the registry says."""

    busy_slots: int
    workers: int
    slots: int
    busy_pods: tuple[str, ...]  # pods with at least one busy slot


@dataclass(frozen=True)
class Snapshot:
    queues: Mapping[str, QueueDepth]
    dead_letters: int
    measured_at: float
    #: HLEN of kombu's `unacked` hash (None when not measured, e.g. an old snapshot).
    unacked: int | None = None
    #: What live workers hold in all (running + reserved + scheduled over every queue they consume).
    held: int | None = None
    #: Live workers per pool (from the registry, in the same round trip; not serialised).
    pools: Mapping[str, PoolLoad] = field(default_factory=dict, compare=False)

    @property
    def unaccounted(self) -> int | None:
        """`unacked` entries no live worker accounts for (dead workers, foreign consumers); 0 = consistent.

        Negative when the registry is a moment ahead of Redis (a worker reports a message it is acking)."""
        return None if self.unacked is None or self.held is None else self.unacked - self.held

    def demand(self, queues: Iterable[str]) -> int:
        """Pending plus in-flight tasks summed over `queues` (unknown queues count as empty)."""
        return sum(self.queues[q].demand for q in queues if q in self.queues)

    def to_dict(self) -> dict[str, Any]:
        return {
            "queues": {
                name: {"pending": d.pending, "in_flight": d.in_flight, "oldest_pending_age": d.oldest_pending_age,
                       "running": d.running, "reserved": d.reserved, "scheduled": d.scheduled}
                for name, d in self.queues.items()
            },
            "dead_letters": self.dead_letters,
            "measured_at": self.measured_at,
            "unacked": self.unacked,
            "held": self.held,
            "unaccounted": self.unaccounted,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Snapshot:
        queues = {
            name: QueueDepth(name, int(d["pending"]), int(d["in_flight"]), d.get("oldest_pending_age"),
                             int(d.get("running", 0)), int(d.get("reserved", 0)), int(d.get("scheduled", 0)))
            for name, d in data["queues"].items()
        }
        unacked, held = (int(data[k]) if data.get(k) is not None else None for k in ("unacked", "held"))
        return cls(queues=queues, dead_letters=int(data["dead_letters"]), measured_at=float(data["measured_at"]),
                   unacked=unacked, held=held)


def measure(
    client: redis.Redis,
    settings: Settings,
    queues: Sequence[str] = QUEUES,
    *,
    now: float | None = None,
    worker_max_age: float = LIVE_MAX_AGE,
    use_sums: bool = True,
) -> Snapshot:
    """Measure every queue in one round trip (see the module docstring and measure_script).

    `use_sums=False` parses every worker's load line instead of reading the registry's sums: the same
    numbers, O(workers) (the previous way, kept for the benchmark and the tests that compare the two)."""
    at = time.time() if now is None else now
    args = _script_args(settings, tuple(queues), at, worker_max_age, use_sums)
    try:
        reply = client.evalsha(MEASURE_SHA, *args)
    except redis.exceptions.NoScriptError:  # first poll, a restart, SCRIPT FLUSH: one EVAL runs and caches it
        reply = client.eval(MEASURE_LUA, *args)
    parsed = _parse(reply, queues)
    if parsed.legacy:
        with client.pipeline(transaction=True) as pipe:
            pipe.hvals(settings.global_keyprefix + UNACKED_KEY)
            pipe.hvals(key(settings, WORKERS))
            unacked_values, entries = pipe.execute()
        parsed = parsed.from_legacy(unacked_values, entries, queues, at, worker_max_age)
    return parsed.snapshot(queues, at)


async def measure_async(
    client: Any,
    settings: Settings,
    queues: Sequence[str] = QUEUES,
    *,
    now: float | None = None,
    worker_max_age: float = LIVE_MAX_AGE,
) -> Snapshot:
    """measure() with a `redis.asyncio` client: the same script, parsing and numbers, awaited on the caller's
    loop. The operator's scheduler polls hundreds of queues a second: a thread per call made eight threads
    and two event loops fight for the GIL (see operator autoscaler/scheduler.py)."""
    at = time.time() if now is None else now
    args = _script_args(settings, tuple(queues), at, worker_max_age, True)
    try:
        reply = await client.evalsha(MEASURE_SHA, *args)
    except redis.exceptions.NoScriptError:
        reply = await client.eval(MEASURE_LUA, *args)
    parsed = _parse(reply, queues)
    if parsed.legacy:
        async with client.pipeline(transaction=True) as pipe:
            pipe.hvals(settings.global_keyprefix + UNACKED_KEY)
            pipe.hvals(key(settings, WORKERS))
            unacked_values, entries = await pipe.execute()
        parsed = parsed.from_legacy(unacked_values, entries, queues, at, worker_max_age)
    return parsed.snapshot(queues, at)


def _script_args(settings: Settings, queues: tuple[str, ...], at: float, worker_max_age: float,
                 use_sums: bool) -> tuple[Any, ...]:
    """numkeys, KEYS and ARGV of the measure script for these queues at time `at`."""
    keys = _keys(settings.global_keyprefix, settings.priority_steps, settings.priority_separator, queues)
    return (len(keys), *keys, len(settings.priority_steps), repr(at), repr(worker_max_age), SENT_AT_HEADER,
            repr(at - worker_max_age), key(settings, WORKER_BUSY), int(use_sums), *queues)


@dataclass(frozen=True)
class _Reply:
    """The script's answer, decoded; `legacy` when some live worker publishes no load line."""

    queue_fields: list[str]
    unacked: int
    dead_letters: int
    total_held: int | None
    legacy: bool
    held: Mapping[str, tuple[int, int, int]]
    pools: Mapping[str, PoolLoad]

    def from_legacy(self, unacked_values: Iterable[bytes | str], entries: Iterable[bytes | str],
                    queues: Sequence[str], at: float, worker_max_age: float) -> _Reply:
        """Workers too old to publish a load line: count kombu's hash, as before (O(in flight))."""
        counted = in_flight_by_queue(unacked_values, queues)
        return _Reply(self.queue_fields, self.unacked, self.dead_letters, None, False,
                      {q: (counted.get(q, 0), 0, 0) for q in queues}, legacy_pools(entries, at, worker_max_age))

    def snapshot(self, queues: Sequence[str], measured_at: float) -> Snapshot:
        depths: dict[str, QueueDepth] = {}
        for index, queue in enumerate(queues):
            pending, sent = int(self.queue_fields[2 * index]), self.queue_fields[2 * index + 1]
            age = max(0.0, measured_at - float(sent)) if pending and sent != "-" else None
            running, reserved, scheduled = self.held[queue]
            depths[queue] = QueueDepth(queue, pending, running + reserved, age, running, reserved, scheduled)
        return Snapshot(queues=depths, dead_letters=self.dead_letters, measured_at=measured_at, unacked=self.unacked,
                        held=self.total_held, pools=self.pools)


def _parse(reply: Sequence[Any], queues: Sequence[str]) -> _Reply:
    n = len(queues)
    fields = _text(reply[0]).split(" ")
    queue_fields, pos = fields[: 2 * n], 2 * n
    unacked, dead_letters, total_held, legacy = (int(x) for x in fields[pos : pos + 4])
    pos += 5  # and whether the sums were read (1) or every line parsed (0): the same numbers either way
    counts = [int(x) for x in fields[pos : pos + 3 * n]]
    held = {q: (counts[3 * i], counts[3 * i + 1], counts[3 * i + 2]) for i, q in enumerate(queues)}
    pools: dict[str, PoolLoad] = {}
    for block in reply[1:]:
        name, busy, online, slots, pods = _text(block).split("\t", 4)
        pools[name] = PoolLoad(int(busy), int(online), int(slots), tuple(sorted(pods.split("\n"))) if pods else ())
    return _Reply(queue_fields, unacked, dead_letters, total_held, bool(legacy), held, pools)


@functools.lru_cache(maxsize=256)
def _keys(prefix: str, steps: tuple[int, ...], separator: str, queues: tuple[str, ...]) -> tuple[str, ...]:
    """The script's KEYS for this prefix and these queues (built once: the same on every poll)."""
    lists = [k for q in queues for k in priority_list_keys(q, steps, separator, prefix)]
    return (*lists, *(prefix + name for name in (WORKERS, UNACKED_KEY, DEAD_LETTER_KEY, WORKER_LOAD, WORKER_SEEN,
                                                  WORKER_SUMS)))


def legacy_pools(entries: Iterable[bytes | str], now: float, max_age: float) -> dict[str, PoolLoad]:
    """Per pool load from the JSON registry entries (the fallback when some workers publish no load line)."""
    live = []
    for raw in entries:
        try:
            info = WorkerInfo.from_json(raw)
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
        if now - info.updated_at <= max_age:
            live.append(info)
    pools: dict[str, PoolLoad] = {}
    for name in sorted({w.pool for w in live}):
        members = [w for w in live if w.pool == name]
        pools[name] = PoolLoad(sum(w.busy for w in members), len(members), sum(w.concurrency for w in members),
                               tuple(sorted({w.pod for w in members if w.busy > 0})))
    return pools


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def in_flight_by_queue(unacked_values: Iterable[bytes | str], queues: Sequence[str]) -> dict[str, int]:
    """Count `unacked` entries per queue: by routing key, else by exchange (ours are named after queues).

    O(in flight): only the fallback for registry entries of workers too old to report what they hold."""
    known = set(queues)
    counts: dict[str, int] = {}
    for raw in unacked_values:
        try:
            _message, exchange, routing_key = json.loads(raw)
        except (ValueError, TypeError):
            continue  # not a kombu entry; never let a stray value break the measurement
        queue = routing_key if routing_key in known else exchange if exchange in known else None
        if queue is not None:
            counts[queue] = counts.get(queue, 0) + 1
    return counts


def sent_at(raw_message: bytes | str) -> float | None:
    """The publish time stamped in a queued kombu message, or None if it has none."""
    try:
        message = json.loads(raw_message)
        value = message.get("headers", {}).get(SENT_AT_HEADER)
        return float(value) if value is not None else None
    except (ValueError, TypeError, AttributeError):
        return None


def naive_lengths(client: redis.Redis, settings: Settings, queues: Sequence[str] = QUEUES) -> dict[str, int]:
    """What KEDA's Redis scaler and celery-exporter see: one LLEN of each base list (for comparison only)."""
    return {q: int(client.llen(settings.global_keyprefix + q)) for q in queues}
