"""The worker registry: each worker's main process says, every second, who it is and how busy it is.

Busy slots come from `celery.worker.state.active_requests` of the main process (the requests handed
to the pool and accepted), which under prefork is the only process that knows them all. The
autoscaler uses this to never scale a pool below its busy workers and to mark busy pods with a
pod-deletion-cost; the collector turns it into per-pool gauges. Entries older than `max_age` are
ignored (a killed worker cannot delete its own entry); very old ones are swept by live workers.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import redis
from celery import bootsteps

from ..config import Settings
from ..redis_client import get_redis
from .keys import WORKERS, key

logger = logging.getLogger(__name__)

PUBLISH_INTERVAL = 1.0
#: Entries this old are deleted by any live worker (their owner is surely gone).
SWEEP_AFTER = 300.0


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

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "queues": list(self.queues)})

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
        )


def publish(client: redis.Redis, settings: Settings, info: WorkerInfo) -> None:
    client.hset(key(settings, WORKERS), info.hostname, info.to_json())


def unregister(client: redis.Redis, settings: Settings, hostname: str) -> None:
    client.hdel(key(settings, WORKERS), hostname)


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
    return int(client.hdel(key(settings, WORKERS), *stale)) if stale else 0


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
        static = {
            "hostname": hostname,
            "pool": pool_name(hostname),
            "pod": pod_name(),
            "pid": os.getpid(),
            "queues": consumed_queues(worker),
            "concurrency": int(worker.concurrency or 1),
        }

        def loop() -> None:
            sweeps = 0
            while not self._stop.is_set():
                try:
                    client = get_redis(settings)
                    publish(client, settings, WorkerInfo(**static, busy=busy_count(), updated_at=time.time()))
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
