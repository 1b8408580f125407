"""Worker-registry entries for tests that hold messages without a real worker (measure() counts in flight
from what live workers report holding, not from kombu's `unacked` hash)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import redis
from bookgen_worker.config import Settings
from bookgen_worker.metrics.workers import Held, WorkerInfo, publish, unregister


def holder(held: Mapping[str, Held], *, hostname: str = "holder@test", updated_at: float | None = None,
           pool: str = "holder") -> WorkerInfo:
    return WorkerInfo(hostname, pool, f"pod-{hostname}", 1, tuple(held), 1, sum(h.running for h in held.values()),
                      time.time() if updated_at is None else updated_at, dict(held))


@contextmanager
def registered(client: redis.Redis, settings: Settings, held: Mapping[str, Held],
               hostname: str = "holder@test") -> Iterator[WorkerInfo]:
    """A live registry entry holding `held`, refreshed every half second as a worker would, until exit."""
    stop = threading.Event()

    def refresh() -> None:
        while not stop.wait(0.5):
            publish(client, settings, holder(held, hostname=hostname))

    info = holder(held, hostname=hostname)
    publish(client, settings, info)
    thread = threading.Thread(target=refresh, daemon=True)
    thread.start()
    try:
        yield info
    finally:
        stop.set()
        thread.join()
        unregister(client, settings, hostname)
