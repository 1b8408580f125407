"""The worker registry: each worker's main process says, every second, who it is and what it holds.

Busy slots come from `celery.worker.state.active_requests` of the main process (the requests handed
to the pool and accepted), which under prefork is the only process that knows them all. The same
process also knows, per queue, every message it holds unacknowledged (`held`):

- running: accepted by the pool (a slot runs it),
- reserved: taken from Redis and waiting in this worker (prefetch, or a rate-limit bucket),
- scheduled: held for an ETA/countdown (retry backoff) and not yet due: not demand, since no other
  worker could take it (celery's `state.scheduled_requests`).

measure() sums `held` over live workers (O(workers), not O(in-flight)) instead of parsing kombu's
`unacked` hash. The autoscaler uses the registry to never scale a pool below its busy workers and to
mark busy pods with a pod-deletion-cost; the collector turns it into per-pool gauges. Entries older
than `max_age` are ignored (a killed worker cannot delete its own entry, and holds nothing any other
worker could run before the visibility timeout); very old ones are swept by live workers.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, NamedTuple

import redis
from celery import bootsteps

from ..config import Settings
from ..redis_client import get_redis
from .keys import WORKER_BUSY, WORKER_LOAD, WORKER_REBUILT, WORKER_SEEN, WORKER_SUMS, WORKERS, key
from .registry_scripts import PUBLISH_LUA, REBUILD_LUA, REMOVE_LUA

logger = logging.getLogger(__name__)

PUBLISH_INTERVAL = 1.0
#: Entries this old are deleted by any live worker (their owner is surely gone).
SWEEP_AFTER = 300.0
#: A worker that has not reported for this long is gone (it publishes every PUBLISH_INTERVAL).
LIVE_MAX_AGE = 10.0
#: The sums measure() reads are recomputed from the lines this often (by whichever worker sweeps first).
REBUILD_EVERY = 60.0


class Held(NamedTuple):
    """What one worker holds unacknowledged for one queue."""

    running: int = 0
    reserved: int = 0
    scheduled: int = 0

    @property
    def in_flight(self) -> int:
        """Demand: what this worker runs or will run next (ETA-held tasks are not due yet)."""
        return self.running + self.reserved

    @property
    def total(self) -> int:
        return self.running + self.reserved + self.scheduled


@dataclass(frozen=True)
class WorkerInfo:
    hostname: str
    pool: str
    pod: str
    pid: int
    queues: tuple[str, ...]
    concurrency: int
    busy: int
    updated_at: float
    #: queue -> what this worker holds of it; None from a worker too old to say (rolling upgrade).
    held: Mapping[str, Held] | None = None

    def to_json(self) -> str:
        data = {**asdict(self), "queues": list(self.queues)}
        data["held"] = None if self.held is None else {q: list(h) for q, h in self.held.items()}
        return json.dumps(data)

    @classmethod
    def from_json(cls, raw: bytes | str) -> WorkerInfo:
        data = json.loads(raw)
        return cls(
            hostname=str(data["hostname"]),
            pool=str(data["pool"]),
            pod=str(data["pod"]),
            pid=int(data["pid"]),
            queues=tuple(data["queues"]),
            concurrency=int(data["concurrency"]),
            busy=int(data["busy"]),
            updated_at=float(data["updated_at"]),
            held=_held(data.get("held")),
        )


def _held(raw: Any) -> dict[str, Held] | None:
    if raw is None:
        return None
    return {str(q): Held(*(int(n) for n in counts[:3])) for q, counts in raw.items()}


def load_line(info: WorkerInfo) -> str:
    """`updated_at pool pod busy concurrency` then `queue running reserved scheduled` per queue, tab-separated."""
    fields = [repr(info.updated_at), info.pool, info.pod, str(info.busy), str(info.concurrency)]
    for queue, held in sorted((info.held or {}).items()):
        fields += [queue, str(held.running), str(held.reserved), str(held.scheduled)]
    return "\t".join(f.replace("\t", " ") for f in fields)


def _registry_keys(settings: Settings) -> list[str]:
    return [key(settings, WORKERS), key(settings, WORKER_LOAD), key(settings, WORKER_SEEN), key(settings, WORKER_SUMS)]


def publish(client: redis.Redis, settings: Settings, info: WorkerInfo) -> None:
    """The JSON entry (read by the collector, the CLI, the local runtime) and, when the worker can say
    what it holds, its load line and the sums measure() reads (registry_scripts), in one script."""
    line = "" if info.held is None else load_line(info)
    client.eval(PUBLISH_LUA, 4, *_registry_keys(settings), info.hostname, info.to_json(), line,
                repr(info.updated_at), key(settings, WORKER_BUSY))


def unregister(client: redis.Redis, settings: Settings, hostname: str) -> None:
    client.eval(REMOVE_LUA, 4, *_registry_keys(settings), hostname, key(settings, WORKER_BUSY))


def rebuild_sums(client: redis.Redis, settings: Settings, *, every: float = REBUILD_EVERY) -> bool:
    """Recompute the registry's sums from its lines, unless some worker did within `every` seconds."""
    return bool(client.eval(REBUILD_LUA, 5, *_registry_keys(settings), key(settings, WORKER_REBUILT),
                            key(settings, WORKER_BUSY), max(1, round(every))))


def read_workers(
    client: redis.Redis, settings: Settings, max_age: float = 10, *, now: float | None = None
) -> list[WorkerInfo]:
    """Workers that reported within `max_age` seconds, sorted by hostname."""
    now = time.time() if now is None else now
    workers = []
    for raw in client.hvals(key(settings, WORKERS)):
        try:
            info = WorkerInfo.from_json(raw)
        except (ValueError, KeyError, TypeError):
            continue
        if now - info.updated_at <= max_age:
            workers.append(info)
    return sorted(workers, key=lambda w: w.hostname)


def sweep(client: redis.Redis, settings: Settings, *, now: float | None = None) -> int:
    now = time.time() if now is None else now
    stale = []
    for field, raw in client.hgetall(key(settings, WORKERS)).items():
        try:
            if now - WorkerInfo.from_json(raw).updated_at > SWEEP_AFTER:
                stale.append(field)
        except (ValueError, KeyError, TypeError):
            stale.append(field)
    removed = 0
    if stale:  # each with its load line, subtracted from the sums
        with client.pipeline(transaction=False) as pipe:
            for field in stale:
                pipe.eval(REMOVE_LUA, 4, *_registry_keys(settings), field, key(settings, WORKER_BUSY))
            removed = sum(int(n) for n in pipe.execute())
    # Load lines go with their entry (a line without one is an orphan of an entry removed earlier); the
    # rebuild drops those and heals sums that were changed from outside.
    rebuild_sums(client, settings)
    return removed


def pool_name(hostname: str, env: dict[str, str] | os._Environ[str] = os.environ) -> str:
    """BOOKGEN_POOL, else the node name before '@' (workers run as `-n <pool>@%h`)."""
    return env.get("BOOKGEN_POOL") or hostname.split("@", 1)[0]


def pod_name(env: dict[str, str] | os._Environ[str] = os.environ) -> str:
    return env.get("POD_NAME") or f"local-{os.getpid()}"


def consumed_queues(worker: Any) -> tuple[str, ...]:
    try:
        return tuple(sorted(worker.app.amqp.queues.consume_from))
    except Exception:
        return ()


def busy_count() -> int:
    from celery.worker import state

    return len(state.active_requests)


def request_queue(request: Any, queues: Iterable[str]) -> str:
    """The queue a request came from: its routing key, else its exchange (ours are named after queues)."""
    info = getattr(request, "delivery_info", None) or {}
    routing_key, exchange = info.get("routing_key"), info.get("exchange")
    known = set(queues)
    if routing_key in known or exchange not in known:
        return str(routing_key or exchange or "")
    return str(exchange)


def count_held(active: Iterable[Any], reserved: Iterable[Any], scheduled: Iterable[Any],
               queues: Sequence[str]) -> dict[str, Held]:
    """Per queue: running (active), reserved and not active, scheduled (ETA) and not yet reserved.

    celery adds a request to `reserved_requests` before the pool accepts it (and to `active_requests`
    on acceptance), and moves an ETA request from `scheduled_requests` to `reserved_requests` when it
    is due; the differences keep every request in exactly one column.
    """
    active_ids = {id(r) for r in active}
    reserved_list = list(reserved)
    reserved_ids = {id(r) for r in reserved_list}
    counts: dict[str, list[int]] = {}
    for column, requests, skip in ((0, active, set()), (1, reserved_list, active_ids),
                                   (2, scheduled, reserved_ids | active_ids)):
        for request in requests:
            if id(request) in skip:
                continue
            counts.setdefault(request_queue(request, queues), [0, 0, 0])[column] += 1
    return {q: Held(*c) for q, c in counts.items()}


def held_now(queues: Sequence[str]) -> tuple[int, dict[str, Held]] | None:
    """(busy slots, held per queue) from this process's celery state; None if it kept changing under us."""
    from celery.worker import state

    for _ in range(5):
        try:  # the sets are changed by the consumer's thread; copy them before counting
            active = list(state.active_requests)
            reserved = list(state.reserved_requests)
            scheduled = list(getattr(state, "scheduled_requests", ()))  # celery >= 5.5
        except RuntimeError:  # "Set changed size during iteration": try again
            continue
        return len(active), count_held(active, reserved, scheduled, queues)
    return None


class WorkerRegistryStep(bootsteps.StartStopStep):  # type: ignore[misc]
    """Publishes this worker's WorkerInfo every second from a thread of the main process.

    A thread rather than the event-loop timer: a solo pool running a long task blocks the loop, and
    that worker must still show up as online and busy.
    """

    requires = ("celery.worker.components:Pool",)

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, worker: Any) -> None:
        settings: Settings = worker.app.bookgen_settings
        hostname = str(worker.hostname)
        # What stays the same for the worker's life; busy, held and the time change with every publish.
        static = WorkerInfo(hostname=hostname, pool=pool_name(hostname), pod=pod_name(), pid=os.getpid(),
                            queues=consumed_queues(worker), concurrency=int(worker.concurrency or 1), busy=0,
                            updated_at=0.0)

        def loop() -> None:
            sweeps = 0
            last: tuple[int, dict[str, Held]] = (0, {})
            while not self._stop.is_set():
                try:
                    client = get_redis(settings)
                    last = held_now(static.queues) or last
                    busy, held = last
                    publish(client, settings, replace(static, busy=busy, updated_at=time.time(), held=held))
                    sweeps += 1
                    if sweeps % 60 == 1:
                        sweep(client, settings)
                except Exception as exc:
                    logger.warning("could not publish worker %s to the registry: %s", hostname, exc)
                self._stop.wait(PUBLISH_INTERVAL)

        self._thread = threading.Thread(target=loop, name="bookgen-registry", daemon=True)
        self._thread.start()

    def stop(self, worker: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            unregister(get_redis(worker.app.bookgen_settings), worker.app.bookgen_settings, str(worker.hostname))
        except Exception as exc:
            logger.warning("could not remove worker %s from the registry: %s", worker.hostname, exc)

    shutdown = stop


def busy_hostnames(workers: Sequence[WorkerInfo]) -> list[str]:
    return [w.hostname for w in workers if w.busy > 0]
