"""The local platform: "make N workers of pool P exist" with `celery worker` processes on this machine.

The autoscaler drives it exactly as it drives the Kubernetes platform (same Platform interface:
replicas, busy_workers, scale). Local rules, mirroring what a Deployment does:

- Scale-out starts new worker processes (`<pool>-<i>@<host>`, POD_NAME `local-<pool>-<i>`).
- Scale-in stops only *idle* workers, chosen from the worker registry's busy counts (the busy list
  the autoscaler passes, plus a fresh registry read), preferring the newest and never the one serving
  /metrics; a busy worker is never picked, even if that leaves the pool above the target for now
  (the autoscaler asks again next poll). Stopping is SIGTERM to the worker's process group: Celery's
  warm shutdown lets a task that started in the instant since the registry was read finish, and
  hands prefetched messages back to Redis. After `grace` seconds a worker still running is killed.
- Like a ReplicaSet, a worker that dies on its own is replaced to keep the desired count; like a
  CrashLoopBackOff, a pool whose workers keep dying (CRASH_LIMIT in CRASH_WINDOW seconds) gets no new
  worker until the window has passed, so a broken environment does not spawn processes in a loop.

Every start/stop/exit is appended to `<state>/events.jsonl` (what the tests and `bookgen up`'s view
read to prove that no busy worker was stopped).
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from bookgen_operator.core.autoscaler.platform import BusyUnknown
from bookgen_operator.core.objects import JSON
from bookgen_operator.core.spec import PoolSpec
from bookgen_operator.local.supervisor import Child, Supervisor

log = logging.getLogger(__name__)


#: (pool, index, serve_metrics) -> (argv, env) of one worker process.
Launcher = Callable[[PoolSpec, int, bool], tuple[list[str], dict[str, str]]]
#: pod name -> busy slots, from the worker registry (fresh entries only).
BusyReader = Callable[[], Mapping[str, int]]


CRASH_LIMIT = 3
CRASH_WINDOW = 30.0


def pod_name(pool: str, index: int) -> str:
    return f"local-{pool}-{index}"


class LocalPlatform:
    def __init__(self, supervisor: Supervisor, pools: Sequence[PoolSpec], launch: Launcher, busy_reader: BusyReader,
                 *, events_path: Path, grace: float = 60.0, metrics_pool: str | None = None) -> None:
        self.supervisor = supervisor
        self.pools = {p.name: p for p in pools}
        self.launch = launch
        self.busy_reader = busy_reader
        self.grace = grace
        self.metrics_pool = metrics_pool
        self.events_path = events_path
        self.desired: dict[str, int] = {}
        self.crashes = 0
        self._crash_times: dict[str, deque[float]] = {}
        self._backoff_logged: dict[str, float] = {}

    # ------------------------------------------------------------------ queries

    def _children(self, pool: str) -> list[Child]:
        return [c for c in self.supervisor.children.values()
                if c.labels.get("kind") == "worker" and c.labels.get("pool") == pool]

    def workers(self, pool: str) -> list[Child]:
        """Running workers of `pool` that were not asked to stop, oldest index first."""
        alive = [c for c in self._children(pool) if c.running and c.stopping_since is None]
        return sorted(alive, key=lambda c: int(c.labels["index"]))

    def stopping(self, pool: str) -> list[Child]:
        return [c for c in self._children(pool) if c.stopping_since is not None]

    async def replicas(self, pool: str) -> int:
        return len(self.workers(pool))

    async def busy_workers(self, pool: str) -> list[str]:
        busy = await asyncio.to_thread(self._read_busy)
        if busy is None:
            raise BusyUnknown("cannot read the worker registry in Redis")
        mine = {c.labels["pod"] for c in self._children(pool)}
        return sorted(pod for pod, n in busy.items() if n > 0 and pod in mine)

    def _read_busy(self) -> Mapping[str, int] | None:
        try:
            return self.busy_reader()
        except Exception as exc:  # Redis briefly unreachable: unknown, never "nobody is busy"
            log.warning("cannot read the worker registry: %s", exc)
            return None

    # ------------------------------------------------------------------ actions

    async def scale(self, pool: str, replicas: int, busy: Sequence[str] = ()) -> None:
        if pool not in self.pools:
            raise KeyError(f"unknown pool {pool!r}")
        self.desired[pool] = replicas
        current = self.workers(pool)
        if replicas > len(current):
            for _ in range(replicas - len(current)):
                if not self._may_start(pool):
                    break
                self._start(pool)
        elif replicas < len(current):
            fresh = await asyncio.to_thread(self._read_busy)
            if fresh is None:
                return  # busy workers unknown: stop nobody now; the autoscaler asks again next poll
            self._stop_idle(pool, len(current) - replicas, set(busy), fresh)

    def _free_index(self, pool: str) -> int:
        # A stopping worker still owns its hostname (and registry entry): never reuse its index.
        used = {int(c.labels["index"]) for c in self._children(pool)}
        index = 0
        while index in used:
            index += 1
        return index

    def _serves_metrics(self) -> bool:
        """Whether the next worker of the metrics pool should serve /metrics (nobody else does)."""
        return not any(c.labels.get("metrics") == "1" and c.running and c.stopping_since is None
                       for c in self._children(self.metrics_pool or ""))

    def _start(self, pool: str) -> Child:
        index = self._free_index(pool)
        metrics = pool == self.metrics_pool and self._serves_metrics()
        argv, env = self.launch(self.pools[pool], index, metrics)
        pod = pod_name(pool, index)
        child = self.supervisor.start(
            f"worker-{pool}-{index}", argv, env,
            labels={"kind": "worker", "pool": pool, "index": str(index), "pod": pod, "metrics": "1" if metrics else ""},
        )
        self._event("start", pool, pod, pid=child.pid)
        return child

    def _stop_idle(self, pool: str, count: int, busy: set[str], registry: Mapping[str, int]) -> list[Child]:
        def idle(c: Child) -> bool:
            pod = c.labels["pod"]
            return pod not in busy and registry.get(pod, 0) == 0

        candidates = [c for c in self.workers(pool) if idle(c)]
        # Newest first, and the /metrics server last (stopping it leaves a scrape gap).
        candidates.sort(key=lambda c: (c.labels.get("metrics") == "1", -int(c.labels["index"])))
        victims = candidates[:count]
        for child in victims:
            self.supervisor.terminate(child.name)
            self._event("stop", pool, child.labels["pod"], pid=child.pid, busy=registry.get(child.labels["pod"], 0))
        if len(victims) < count:
            log.info("pool %s: %d worker(s) busy, stopping %d of %d now", pool, count - len(victims),
                     len(victims), count)
        return victims

    # ------------------------------------------------------------------ housekeeping (every poll)

    def housekeep(self) -> None:
        """Reap exited workers, kill those overdue after SIGTERM, replace workers that died."""
        for child in self.supervisor.kill_overdue(self.grace):
            if child.labels.get("kind") == "worker":
                self._event("kill", child.labels["pool"], child.labels["pod"], pid=child.pid)
        for child in self.supervisor.reap():
            if child.labels.get("kind") != "worker":
                continue
            pool, pod = child.labels["pool"], child.labels["pod"]
            if child.stopping_since is None:
                self.crashes += 1
                self._crash_times.setdefault(pool, deque()).append(time.monotonic())
                log.warning("worker %s exited unexpectedly (%s); replacing it", pod, _describe(child.returncode))
                self._event("crash", pool, pod, pid=child.pid, returncode=child.returncode)
            else:
                self._event("exit", pool, pod, pid=child.pid, returncode=child.returncode)
        for pool, want in self.desired.items():
            for _ in range(want - len(self.workers(pool))):
                if not self._may_start(pool):
                    break
                self._start(pool)

    def _may_start(self, pool: str) -> bool:
        """False while the pool's workers keep crashing (see the module docstring)."""
        times = self._crash_times.get(pool)
        now = time.monotonic()
        while times and now - times[0] > CRASH_WINDOW:
            times.popleft()
        if not times or len(times) < CRASH_LIMIT:
            return True
        if now - self._backoff_logged.get(pool, -CRASH_WINDOW) >= CRASH_WINDOW:
            self._backoff_logged[pool] = now
            log.warning("pool %s: %d workers crashed within %g s; no new worker until %g s after the last crash "
                        "(see %s)", pool, len(times), CRASH_WINDOW, CRASH_WINDOW, self.supervisor.log_dir)
        return False

    async def start_pools(self, initial: Mapping[str, int]) -> None:
        for pool, count in initial.items():
            await self.scale(pool, count)

    def all_workers(self) -> list[Child]:
        return [c for c in self.supervisor.children.values() if c.labels.get("kind") == "worker"]

    def record(self, event: str, child: Child, **extra: object) -> None:
        self._event(event, child.labels["pool"], child.labels["pod"], pid=child.pid, **extra)

    def _event(self, event: str, pool: str, pod: str, **extra: object) -> None:
        record = {"event": event, "pool": pool, "pod": pod, "at": time.time(), **extra}
        with open(self.events_path, "a") as f:
            f.write(json.dumps(record) + "\n")


def _describe(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit status {code}"


def read_events(path: Path) -> list[JSON]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
