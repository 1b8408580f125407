"""Exact queue depth: pending over every priority list, in flight from kombu's `unacked` hash.

KEDA's Redis scaler and celery-exporter read one `LLEN` of the base list, so they miss the priority
sub-lists (`queue\\x06\\x163`, ...) and every task a worker has already taken (prefetched or running),
which kombu keeps in the shared `unacked` hash until it is acknowledged. Counting only the base list
makes an autoscaler shrink a busy fleet. Here one pipelined round trip reads, for all queues at once:

- `LLEN` of every priority list (pending),
- `LINDEX list -1` of every priority list: kombu pushes with LPUSH and pops with RPOP/BRPOP, so the
  right end holds the oldest message of each list (its `bookgen_sent_at` header gives the age),
- `HVALS unacked` (each value is JSON `[message, exchange, routing_key]`, attributed by routing key),
- `HLEN failed_tasks` (the dead-letter queue).

The pipeline runs as MULTI/EXEC so the numbers are one consistent snapshot.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from ..config import Settings
from ..queues import DEAD_LETTER_KEY, QUEUES, priority_list_keys

#: Message header holding the publish time (epoch seconds), stamped by a before_task_publish handler.
SENT_AT_HEADER = "bookgen_sent_at"

#: kombu's hash of delivered-but-unacknowledged messages (prefixed with global_keyprefix, like all keys).
UNACKED_KEY = "unacked"


@dataclass(frozen=True)
class QueueDepth:
    queue: str
    pending: int  # sum of LLEN over every priority list
    in_flight: int  # entries of the kombu `unacked` hash whose routing key is this queue
    oldest_pending_age: float | None  # seconds, None when nothing pending (or no publish time known)

    @property
    def demand(self) -> int:
        return self.pending + self.in_flight


@dataclass(frozen=True)
class Snapshot:
    queues: Mapping[str, QueueDepth]
    dead_letters: int
    measured_at: float

    def demand(self, queues: Iterable[str]) -> int:
        """Pending plus in-flight tasks summed over `queues` (unknown queues count as empty)."""
        return sum(self.queues[q].demand for q in queues if q in self.queues)

    def to_dict(self) -> dict[str, Any]:
        return {
            "queues": {
                name: {"pending": d.pending, "in_flight": d.in_flight, "oldest_pending_age": d.oldest_pending_age}
                for name, d in self.queues.items()
            },
            "dead_letters": self.dead_letters,
            "measured_at": self.measured_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Snapshot:
        queues = {
            name: QueueDepth(name, int(d["pending"]), int(d["in_flight"]), d.get("oldest_pending_age"))
            for name, d in data["queues"].items()
        }
        return cls(queues=queues, dead_letters=int(data["dead_letters"]), measured_at=float(data["measured_at"]))


def measure(
    client: redis.Redis,
    settings: Settings,
    queues: Sequence[str] = QUEUES,
    *,
    now: float | None = None,
) -> Snapshot:
    """Measure every queue in one pipelined round trip (see the module docstring)."""
    prefix = settings.global_keyprefix
    lists = {q: priority_list_keys(q, settings.priority_steps, settings.priority_separator, prefix) for q in queues}
    with client.pipeline(transaction=True) as pipe:
        for keys in lists.values():
            for key in keys:
                pipe.llen(key)
        for keys in lists.values():
            for key in keys:
                pipe.lindex(key, -1)
        pipe.hvals(prefix + UNACKED_KEY)
        pipe.hlen(prefix + DEAD_LETTER_KEY)
        replies = pipe.execute()
    measured_at = time.time() if now is None else now

    per_queue = len(settings.priority_steps)
    count = per_queue * len(lists)
    lengths, tails = replies[:count], replies[count : 2 * count]
    unacked, dead_letters = replies[2 * count], replies[2 * count + 1]

    in_flight = in_flight_by_queue(unacked, queues)
    depths: dict[str, QueueDepth] = {}
    for index, queue in enumerate(lists):
        span = slice(index * per_queue, (index + 1) * per_queue)
        pending = sum(int(n) for n in lengths[span])
        sent = [t for t in (sent_at(raw) for raw in tails[span] if raw is not None) if t is not None]
        age = max(0.0, measured_at - min(sent)) if pending and sent else None
        depths[queue] = QueueDepth(queue, pending, in_flight.get(queue, 0), age)
    return Snapshot(queues=depths, dead_letters=int(dead_letters), measured_at=measured_at)


def in_flight_by_queue(unacked_values: Iterable[bytes | str], queues: Sequence[str]) -> dict[str, int]:
    """Count `unacked` entries per queue: by routing key, else by exchange (ours are named after queues)."""
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
