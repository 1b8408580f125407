"""The faults of the chaos run (bench/chaos.py) and their seeded schedule.

A schedule is a list of (seconds after the books were submitted, kind, pick), drawn from one
`random.Random(seed)`: the same seed gives the same kinds at the same times with the same picks. A
pick chooses among the candidates the cluster has at that moment (the busy workers of a pool, sorted
by name), so the pod a pick lands on depends on how the run went, not on the seed alone.

Kinds:
- `worker-grace`: a worker pod deleted with its grace period (the kubelet's SIGTERM: Celery's warm
  shutdown finishes and acknowledges what runs);
- `worker-kill`: a worker pod deleted with grace 0 (forced: the kubelet SIGKILLs it two seconds after
  SIGTERM); a task it was running comes back after the visibility timeout and runs again, so each such
  kill of a busy worker may add one task run twice;
- `redis-pod`: the Redis pod deleted (its StatefulSet's new pod mounts the same claim and append-only file);
- `operator-leader`: the operator replica holding the lease deleted with grace 0;
- `kubelet-restart`: the node's kubelet stopped by its PID and started again (controlplane.restart_kubelet);
- `redis-full`: the queue's Redis filled to its maxmemory from outside for FULL_SECONDS, a submission
  tried meanwhile (it must be refused in one line), then the filler removed.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client

KINDS = ("worker-grace", "worker-kill", "redis-pod", "operator-leader", "kubelet-restart", "redis-full")
#: Every kind once, plus these again: worker pods are what fails most often.
EXTRA = ("worker-kill", "worker-kill", "worker-grace")
#: The pools a worker fault picks from (content thrice: it runs the chapters, the long tasks).
WORKER_POOLS = ("content", "content", "content", "validation", "export")
FULL_SECONDS = 12.0
FILLER_PREFIX = "chaos:filler:"
FILLER_CHUNK = 256 * 1024
#: Once full, topped up in small pieces: right at maxmemory, not a big chunk below it.
TOP_UP_CHUNK = 4 * 1024


@dataclass(frozen=True)
class Fault:
    at: float
    kind: str
    pick: int


def schedule(seed: int, window: float, first: float = 8.0, gap: float = 6.0) -> list[Fault]:
    """Every kind once and EXTRA again, in a seeded order at seeded times in [first, window], at least
    `gap` seconds apart."""
    rng = random.Random(seed)
    kinds = [*KINDS, *EXTRA]
    rng.shuffle(kinds)
    slack = window - first - gap * (len(kinds) - 1)
    if slack < 0:
        raise ValueError(f"a window of {window} s cannot hold {len(kinds)} faults {gap} s apart")
    offsets = sorted(rng.uniform(0, slack) for _ in kinds)
    return [Fault(round(first + off + gap * i, 1), kind, rng.randrange(1 << 30))
            for i, (off, kind) in enumerate(zip(offsets, kinds, strict=True))]


@dataclass
class Applied:
    """What one fault did, for the summary."""

    fault: Fault
    started: float  # time.time()
    target: str = ""
    busy: list[str] = field(default_factory=list)  # task ids the target was running (worker faults)
    note: str = ""
    seconds: float = 0.0


def pick_worker(core: client.CoreV1Api, namespace: str, queue: str, fault: Fault,
                busy_of: Any) -> tuple[str, str] | None:
    """(pool, pod) to hit: the fault's pool (drawn from WORKER_POOLS by its pick), one of its running
    pods, a busy one when there is one. `busy_of(hostname)` lists the tasks a worker runs now."""
    pool = WORKER_POOLS[fault.pick % len(WORKER_POOLS)]
    selector = f"app.kubernetes.io/instance={queue},bookgen.io/pool={pool}"
    pods = sorted(p.metadata.name for p in core.list_namespaced_pod(namespace, label_selector=selector).items
                  if p.metadata.deletion_timestamp is None and p.status.phase == "Running")
    if not pods:
        return None
    busy = [p for p in pods if busy_of(f"{pool}@{p}")]
    chosen = busy or pods
    return pool, chosen[(fault.pick // len(WORKER_POOLS)) % len(chosen)]


def delete_pod(core: client.CoreV1Api, namespace: str, name: str, grace: int | None) -> None:
    body = client.V1DeleteOptions(grace_period_seconds=grace) if grace is not None else None
    try:
        core.delete_namespaced_pod(name, namespace, body=body)
    except client.ApiException as exc:
        if exc.status != 404:
            raise


def _top_up(redis_client: Any, start: int, deadline: float, chunk: int = FILLER_CHUNK) -> tuple[int, bool]:
    """Write filler keys until Redis refuses one at maxmemory; returns (next key number, refused)."""
    import redis

    i = start
    while time.monotonic() < deadline:
        try:
            redis_client.set(f"{FILLER_PREFIX}{i}", b"x" * chunk)
            i += 1
        except redis.exceptions.OutOfMemoryError:
            return i, True
        except redis.exceptions.ResponseError as exc:
            if "maxmemory" in str(exc):
                return i, True
            raise
        except redis.exceptions.ConnectionError:  # the Redis pod is being replaced
            time.sleep(0.5)
    return i, False


def fill_redis(redis_client: Any, submit: Any, hold: float = FULL_SECONDS) -> str:
    """Fill Redis up to maxmemory with filler keys and keep it there for `hold` seconds (workers free
    memory as they drain, so it is topped up again every half second), try a submission right after a
    top-up, then remove the filler (retried until Redis answers: it may be restarting meanwhile)."""
    import redis

    i, full = _top_up(redis_client, 0, time.monotonic() + 120)
    filled_at = time.monotonic()
    # The submission runs in its own process (the CLI); meanwhile this thread tops Redis up every 50 ms,
    # since the workers draining their queues free memory and would let a small job in between.
    outcome: list[str] = []

    def try_submit() -> None:
        try:
            submit()
            outcome.append("a submission was ACCEPTED while full")
        except Exception as exc:  # the one-line RedisFull the CLI prints
            outcome.append(f"submission refused: {str(exc).splitlines()[0][:100]}")

    submitter = threading.Thread(target=try_submit, name="chaos-submit", daemon=True)
    submitter.start()
    while submitter.is_alive():
        i, _ = _top_up(redis_client, i, time.monotonic() + 10, chunk=TOP_UP_CHUNK)
        submitter.join(0.05)
    submitted = outcome[0] if outcome else "no answer from the submission"
    while time.monotonic() < filled_at + hold:
        i, _ = _top_up(redis_client, i, time.monotonic() + 10)
        time.sleep(0.5)  # the fault's own duration and cadence, by design
    removed = False
    while not removed:
        try:
            keys = list(redis_client.scan_iter(match=f"{FILLER_PREFIX}*", count=1000))
            for start in range(0, len(keys), 500):
                redis_client.delete(*keys[start:start + 500])
            removed = not any(True for _ in redis_client.scan_iter(match=f"{FILLER_PREFIX}*", count=1000))
        except redis.exceptions.RedisError:
            time.sleep(0.5)
    reached = "maxmemory reached" if full else "NOT full after 120 s"
    return f"{i} filler keys, {reached}, held {hold:.0f} s; {submitted}"
