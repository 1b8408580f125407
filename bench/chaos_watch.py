"""What the chaos run watches (bench/chaos.py), from inside the cluster's network namespace.

Every connection to the queue's Redis is made by a thread that entered the cluster's namespace for its
whole life (setns is per thread) and goes to the Service's cluster IP, so a Redis pod rescheduled
behind it is reached again without a new port-forward, and no packet to a 10.x address leaves this
machine's own namespace.

- `Ledger`: every task event the workers send (they run with `BOOKGEN_TASK_EVENTS=true`), kept per task
  id: who started it and when, who finished it. A task started twice (a redelivery after a worker died
  under it) shows as two `task-started` events with the same id. Events are published with Redis
  PUBLISH, so those sent while the receiver is cut off (a Redis pod being replaced) are not seen: the
  ledger records how long it was blind, and the run reports it beside the counts.
- `Progress`: every job's record polled each second; the longest time in which no job advanced while
  some were unfinished is the run's longest stall.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.cluster.sandbox import inside_netns

#: Workers send a heartbeat event every 2 s: this long without any event, the receiver is deaf.
DEAF_SECONDS = 6.0
FINISHED_STATES = ("COMPLETED", "COMPLETED_WITH_ERRORS", "FAILED", "CANCELLED")


def netns_thread(netns: Path, name: str, body: Callable[[], None]) -> threading.Thread:
    """A daemon thread that runs `body` inside the cluster's network namespace."""

    def run() -> None:
        with inside_netns(netns):
            body()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread


@dataclass
class TaskSeen:
    name: str = ""
    starts: list[tuple[str, float]] = field(default_factory=list)  # (worker hostname, time)
    ends: list[tuple[str, str, float]] = field(default_factory=list)  # (kind, worker hostname, time)


@dataclass
class Ledger:
    """Task events, received from the queue's Redis by a thread in the cluster's namespace."""

    netns: Path
    broker_url: str
    tasks: dict[str, TaskSeen] = field(default_factory=dict)
    blind: list[tuple[float, float]] = field(default_factory=list)  # (from, to): the receiver was cut off
    heard: dict[str, float] = field(default_factory=dict)  # worker hostname -> time of its last event
    connected: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None
    _cut_at: float | None = None
    _last_event: float = 0.0
    _receiver: Any = None
    _generation: int = 0
    _replaced_at: float = 0.0
    _events: set[tuple[str, str, str, float]] = field(default_factory=set)

    def start(self) -> None:
        self._replaced_at = time.time()
        self._thread = netns_thread(self.netns, "chaos-ledger", lambda: self._run(0))
        threading.Thread(target=self._watchdog, name="chaos-ledger-watchdog", daemon=True).start()

    def _watchdog(self) -> None:
        """Seen on the real node under load: after the Redis pod was replaced the receiver heard no
        event for the rest of the run (a socket to the old pod, blocked). Workers send a heartbeat
        event every 2 s, so silence means deafness: after DEAF_SECONDS the receiver is asked to stop
        and connect again; after three times that, a new receiver thread replaces it (the old one may be
        stuck in a socket call; events both hear are counted once). The silence counts as blind time."""
        while not self._stop.wait(1.0):
            silent = time.time() - self._last_event if self._last_event else 0.0
            if silent <= DEAF_SECONDS:
                continue
            if self._cut_at is None:
                self._cut_at = self._last_event
            receiver, self._receiver = self._receiver, None
            if receiver is not None:
                receiver.should_stop = True
            if time.time() - self._replaced_at > 3 * DEAF_SECONDS and silent > 3 * DEAF_SECONDS:
                self._generation += 1
                self._replaced_at = time.time()
                generation = self._generation
                netns_thread(self.netns, f"chaos-ledger-{generation}", lambda g=generation: self._run(g))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self, generation: int) -> None:
        from celery import Celery

        app = Celery(broker=self.broker_url)
        app.conf.broker_connection_retry_on_startup = False
        # Without timeouts a connection to a Redis pod that has just gone waits for TCP's own (minutes).
        app.conf.broker_transport_options = {"socket_connect_timeout": 5, "socket_timeout": 15,
                                             "socket_keepalive": True}
        while not self._stop.is_set() and generation == self._generation:
            try:
                with app.connection_for_read() as conn:
                    conn.ensure_connection(max_retries=1)
                    receiver = app.events.Receiver(conn, handlers={"*": self._on_event})
                    self._last_event = max(self._last_event, time.time() - DEAF_SECONDS / 2)
                    self._receiver = receiver
                    for _ in receiver.itercapture(limit=None, timeout=None, wakeup=False):
                        if self._cut_at is not None:
                            self.blind.append((self._cut_at, time.time()))
                            self._cut_at = None
                        self.connected.set()
                        if self._stop.is_set() or generation != self._generation:
                            receiver.should_stop = True
            except Exception:  # the Redis pod is being replaced; connect again
                if self._cut_at is None:
                    self._cut_at = time.time()
                self._stop.wait(0.5)

    def _on_event(self, event: dict[str, Any]) -> None:
        self._last_event = time.time()
        if event.get("hostname"):
            self.heard[str(event["hostname"])] = self._last_event
        kind, uuid = str(event.get("type", "")), event.get("uuid")
        if not uuid or not kind.startswith("task-"):
            return
        with self._lock:
            once = (kind, str(uuid), str(event.get("hostname", "")), float(event.get("timestamp") or 0.0))
            if once in self._events:  # heard by two receivers while one replaced the other
                return
            self._events.add(once)
            seen = self.tasks.setdefault(str(uuid), TaskSeen())
            if event.get("name"):
                seen.name = str(event["name"])
            host, stamp = str(event.get("hostname", "")), float(event.get("timestamp") or time.time())
            if kind == "task-started":
                seen.starts.append((host, stamp))
            elif kind in ("task-succeeded", "task-failed", "task-rejected", "task-revoked", "task-retried"):
                seen.ends.append((kind, host, stamp))

    def snapshot(self) -> dict[str, TaskSeen]:
        with self._lock:
            return {k: TaskSeen(v.name, list(v.starts), list(v.ends)) for k, v in self.tasks.items()}

    def busy_at(self, host: str, when: float) -> list[str]:
        """Task ids running on worker `host` at time `when`: started there, not ended there by then."""
        busy = []
        for uuid, seen in self.snapshot().items():
            started = [t for h, t in seen.starts if h == host and t <= when]
            if started and not any(h == host and max(started) <= t <= when for _, h, t in seen.ends):
                busy.append(uuid)
        return busy

    def blind_seconds(self, until: float) -> float:
        """Seconds the receiver was cut off, the current outage included."""
        now = [(self._cut_at, until)] if self._cut_at is not None else []
        return sum(b - a for a, b in [*self.blind, *now])


@dataclass
class Progress:
    """Each job's progress (steps done), polled every second by a thread in the cluster's namespace."""

    netns: Path
    read_job: Callable[[str], Any]  # job id -> JobRecord
    job_ids: list[str]
    last: dict[str, tuple[str, int, int]] = field(default_factory=dict)  # id -> (state, current, total)
    longest_stall: float = 0.0
    stall_from: float = field(default_factory=time.time)
    unreachable: float = 0.0  # seconds the job store could not be read
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self.stall_from = time.time()
        self._thread = netns_thread(self.netns, "chaos-progress", self._run)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def all_finished(self) -> bool:
        return len(self.last) == len(self.job_ids) and all(s in FINISHED_STATES for s, _, _ in self.last.values())

    def _run(self) -> None:
        while not self._stop.is_set() and not self.all_finished():
            began = time.time()
            try:
                seen = {j: self.read_job(j) for j in self.job_ids}
            except Exception:
                self.unreachable += 1.0
                self._stop.wait(1.0)
                continue
            now = {j: (str(r.state), int(r.current), int(r.total)) for j, r in seen.items()}
            if now != self.last:
                self.longest_stall = max(self.longest_stall, began - self.stall_from)
                self.stall_from = began
            self.last = now
            self._stop.wait(max(0.0, 1.0 - (time.time() - began)))
        self.longest_stall = max(self.longest_stall, time.time() - self.stall_from) if not self.all_finished() \
            else self.longest_stall

    def done_steps(self) -> tuple[int, int]:
        return sum(c for _, c, _ in self.last.values()), sum(t for _, _, t in self.last.values())
