"""The registry's sums (registry_scripts.py) give measure() exactly what parsing every load line gives.

measure() reads per-queue and per-pool sums the registry keeps up to date on every publish, and
subtracts only the lines that went stale. Every test compares it with `use_sums=False` (the same
script parsing every live worker's line, the previous measure()) and with the truth.
"""

from __future__ import annotations

import random

import redis
from bookgen_worker.config import Settings
from bookgen_worker.metrics import measure
from bookgen_worker.metrics.keys import WORKER_REBUILT, WORKER_SEEN, WORKER_SUMS
from bookgen_worker.metrics.measure import Snapshot
from bookgen_worker.metrics.workers import Held, WorkerInfo, publish, rebuild_sums, sweep, unregister

NOW = 50_000.0
QUEUES = ("content_generation", "high_priority", "validation", "export")
POOLS = {"content": ("content_generation", "high_priority"), "validation": ("validation",), "export": ("export",)}


def counts(snapshot: Snapshot) -> tuple[object, ...]:
    queues = {q: (d.running, d.reserved, d.scheduled, d.in_flight) for q, d in snapshot.queues.items()}
    return queues, dict(snapshot.pools), snapshot.held


def both(client: redis.Redis, settings: Settings, now: float, max_age: float = 10.0) -> tuple[Snapshot, Snapshot]:
    return (measure(client, settings, QUEUES, now=now, worker_max_age=max_age),
            measure(client, settings, QUEUES, now=now, worker_max_age=max_age, use_sums=False))


def worker(n: int, pool: str, held: dict[str, Held], updated_at: float) -> WorkerInfo:
    return WorkerInfo(f"{pool}-{n}@h", pool, f"pod-{pool}-{n}", n, POOLS[pool], 2,
                      sum(h.running for h in held.values()), updated_at, held)


def test_sums_follow_every_publish_unregister_and_staleness_exactly(redis_client: redis.Redis) -> None:
    settings = Settings(global_keyprefix="t:")
    rng = random.Random(14)
    live: dict[str, WorkerInfo] = {}
    for step in range(300):
        now = NOW + step
        action = rng.random()
        if action < 0.7 or not live:  # a worker (new or known) publishes what it holds now, maybe late
            pool = rng.choice(sorted(POOLS))
            held = {q: Held(rng.randint(0, 2), rng.randint(0, 3), rng.choice((0, 0, 5))) for q in POOLS[pool]
                    if rng.random() < 0.8}
            info = worker(rng.randint(0, 7), pool, held, now - rng.choice((0, 0, 0, 3, 12, 40)))
            publish(redis_client, settings, info)
            live[info.hostname] = info
        elif action < 0.85:
            hostname = rng.choice(sorted(live))
            unregister(redis_client, settings, hostname)
            del live[hostname]
        else:
            at = now + 400 if rng.random() < 0.3 else now  # sometimes long after: everyone is swept
            sweep(redis_client, settings, now=at)
            live = {h: w for h, w in live.items() if at - w.updated_at <= 300}
        if step % 10 == 0:
            for max_age in (10.0, 30.0):
                fast, parsed = both(redis_client, settings, now, max_age)
                assert counts(fast) == counts(parsed), f"step {step}, max age {max_age}"
                truth: dict[str, list[int]] = {q: [0, 0, 0] for q in QUEUES}
                for w in live.values():
                    if now - w.updated_at <= max_age:
                        for q, h in (w.held or {}).items():
                            truth[q] = [a + b for a, b in zip(truth[q], h, strict=True)]
                assert {q: [d.running, d.reserved, d.scheduled] for q, d in fast.queues.items()} == truth


def test_a_stale_busy_worker_is_neither_online_nor_a_busy_pod(redis_client: redis.Redis) -> None:
    settings = Settings()
    publish(redis_client, settings, worker(1, "export", {"export": Held(2, 1, 0)}, NOW - 1))
    publish(redis_client, settings, worker(2, "export", {"export": Held(1, 0, 3)}, NOW - 30))  # died

    fast, parsed = both(redis_client, settings, NOW)

    assert counts(fast) == counts(parsed)
    export = fast.pools["export"]
    assert (export.workers, export.busy_slots, export.slots, export.busy_pods) == (1, 2, 2, ("pod-export-1",))
    assert (fast.queues["export"].in_flight, fast.queues["export"].scheduled) == (3, 0)


def test_a_steady_worker_republishing_the_same_load_leaves_the_sums_alone(redis_client: redis.Redis) -> None:
    settings = Settings()
    for second in range(5):
        publish(redis_client, settings, worker(1, "validation", {"validation": Held(1, 2, 0)}, NOW + second))
    assert redis_client.hget(WORKER_SUMS, "r\tvalidation") == b"1"
    assert redis_client.hget(WORKER_SUMS, "w\tvalidation") == b"1"
    assert counts(both(redis_client, settings, NOW + 5)[0])[0]["validation"] == (1, 2, 0, 3)


def test_sums_that_cannot_be_trusted_are_not_used_and_a_rebuild_heals_them(redis_client: redis.Redis) -> None:
    settings = Settings()
    publish(redis_client, settings, worker(1, "export", {"export": Held(2, 0, 0)}, NOW))
    publish(redis_client, settings, worker(2, "validation", {"validation": Held(1, 1, 1)}, NOW))
    expected = counts(both(redis_client, settings, NOW)[1])

    redis_client.delete(WORKER_SEEN)  # e.g. lines an older version wrote without the sorted set
    assert counts(both(redis_client, settings, NOW)[0]) == expected  # every line parsed instead

    redis_client.hset(WORKER_SUMS, "r\texport", 99)  # damaged from outside (the set looks consistent again)
    assert rebuild_sums(redis_client, settings)
    assert not rebuild_sums(redis_client, settings)  # once per period across all workers
    assert counts(both(redis_client, settings, NOW)[0]) == expected
    assert redis_client.ttl(WORKER_REBUILT) > 0


def test_an_unregistered_worker_leaves_nothing_behind(redis_client: redis.Redis) -> None:
    settings = Settings()
    publish(redis_client, settings, worker(1, "export", {"export": Held(2, 1, 1)}, NOW))
    unregister(redis_client, settings, "export-1@h")

    fast = both(redis_client, settings, NOW)[0]

    assert fast.pools == {}
    assert fast.held == 0
    assert {int(v) for v in redis_client.hvals(WORKER_SUMS)} == {0}
    assert redis_client.zcard(WORKER_SEEN) == 0
