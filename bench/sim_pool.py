"""The worker-pool model of bench/simulate.py: priority lists, workers with a start-up delay and slots,
warm shutdown with a grace period, and the ReplicaSet controller's choice of which pods to remove.

1 s ticks. Tasks wait in kombu's priority lists (base list first, FIFO within a list); a worker is
ready `startup` seconds after its pod is created and runs `concurrency` tasks at once. A removed
pod gets SIGTERM (warm shutdown: no new tasks) and is killed after its grace period; tasks still
running then are killed and requeued (generously at the head of their list, not after the
visibility timeout). Worker-seconds run from pod creation to exit.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from bookgen_worker.config import DEFAULT_PRIORITY_STEPS
from bookgen_worker.queues import priority_step, transport_priority

from bench.traces import Arrival

#: The product's default priority lists (one per level, 10 and 9 apart; 1 and 0 share the last).
STEPS = DEFAULT_PRIORITY_STEPS


class Sample(NamedTuple):
    """The pool at the end of one tick (after dispatch and the controller's decision), for --plot."""

    at: int
    pending: int  # waiting in any priority list
    base_pending: int  # waiting in the base list only: what KEDA's default Redis scaler reads
    in_flight: int  # started, not finished
    replicas: int  # pods not being removed (the ReplicaSet's spec.replicas); draining pods excluded


@dataclass(eq=False)
class Task:
    arrival: Arrival
    start: float | None = None
    end: float | None = None
    kills: int = 0

    @property
    def list_index(self) -> int:
        return STEPS.index(priority_step(transport_priority(self.arrival.priority), STEPS))


@dataclass(eq=False)
class Worker:
    created: float
    ready_at: float
    uid: float  # the ReplicaSet's last tie-break compares pod UIDs: random order
    running: list[Task] = field(default_factory=list)
    removed_at: float | None = None
    gone_at: float | None = None
    cost: int = 0


Order = Callable[[list["Worker"], float], list["Worker"]]


def _log_rank(seconds: float) -> int:
    """kube's logarithmicRankDiff buckets durations by floor(log2(nanoseconds))."""
    return int(math.log2(seconds * 1e9)) if seconds > 0 else -1


def replicaset_order(pods: list[Worker], now: float, *, use_cost: bool) -> list[Worker]:
    """Victims first, as the ReplicaSet controller ranks them (ActivePodsWithRanks, LogarithmicScaleDown on):
    not ready before ready; lower pod-deletion-cost first; among ready pods, ready for less time first,
    on a log2 scale, ties broken by UID (effectively random); unready pods newest first."""
    def key(w: Worker) -> tuple[bool, int, int, float]:
        ready = w.ready_at <= now
        rank = _log_rank(now - w.ready_at) if ready else 0
        return (ready, w.cost if use_cost else 0, rank, w.uid if ready else -w.created)
    return sorted(pods, key=key)


class Pool:
    def __init__(self, concurrency: int, startup: float, grace: float, seed: int = 0) -> None:
        self.concurrency, self.startup, self.grace = concurrency, startup, grace
        self.lists: list[deque[Task]] = [deque() for _ in STEPS]
        self.workers: list[Worker] = []  # not removed
        self.draining: list[Worker] = []
        self.gone: list[Worker] = []
        self.running: list[tuple[float, int, Task, Worker]] = []
        self.seq = itertools.count()
        self.rng = random.Random(seed)
        self.actions = 0
        self.killed = 0
        self.in_flight = 0
        # Cumulative counters, as the workers export them: sent, finished, run time of the finished.
        self.sent = 0
        self.finished = 0
        self.runtime_sum = 0.0

    def enqueue(self, task: Task, *, front: bool = False) -> None:
        if not front:
            self.sent += 1
        (self.lists[task.list_index].appendleft if front else self.lists[task.list_index].append)(task)

    @property
    def pending(self) -> int:
        return sum(len(lst) for lst in self.lists)

    @property
    def base_pending(self) -> int:
        return len(self.lists[0])

    def oldest_age(self, now: float) -> float | None:
        heads = [lst[0].arrival.at for lst in self.lists if lst]
        return now - min(heads) if heads else None

    def busy(self) -> list[Worker]:
        return [w for w in self.workers if w.running]

    def scale(self, replicas: int, now: float, order: Order) -> None:
        current = len(self.workers)
        if replicas == current:
            return
        self.actions += 1
        if replicas > current:
            self.workers += [Worker(now, now + self.startup, self.rng.random()) for _ in range(replicas - current)]
            return
        for victim in order(self.workers, now)[: current - replicas]:
            self.remove(victim, now)

    def remove(self, victim: Worker, now: float) -> None:
        self.workers.remove(victim)
        victim.removed_at = now
        if victim.running:
            self.draining.append(victim)
        else:
            victim.gone_at = now
            self.gone.append(victim)

    def _finish(self, worker: Worker, at: float) -> None:
        worker.gone_at = at
        self.draining.remove(worker)
        self.gone.append(worker)

    def step(self, now: float) -> None:
        while self.running and self.running[0][0] <= now:
            end, _, task, worker = heapq.heappop(self.running)
            if task not in worker.running:
                continue  # killed earlier
            task.end = end
            worker.running.remove(task)
            self.in_flight -= 1
            self.finished += 1
            self.runtime_sum += task.arrival.duration
            if worker.removed_at is not None and not worker.running:
                self._finish(worker, end)
        for worker in list(self.draining):
            if now >= worker.removed_at + self.grace:  # type: ignore[operator]
                for task in worker.running:  # SIGKILL: the task comes back (acks_late) and runs again
                    task.kills += 1
                    task.start = None
                    self.killed += 1
                    self.in_flight -= 1
                    self.enqueue(task, front=True)
                worker.running.clear()
                self._finish(worker, now)
        for worker in self.workers:
            if worker.ready_at > now:
                continue
            while len(worker.running) < self.concurrency:
                task = next((lst.popleft() for lst in self.lists if lst), None)
                if task is None:
                    return
                task.start = now
                worker.running.append(task)
                self.in_flight += 1
                heapq.heappush(self.running, (now + task.arrival.duration, next(self.seq), task, worker))

    def worker_seconds(self, end: float) -> float:
        every = self.gone + self.draining + self.workers
        return sum((w.gone_at if w.gone_at is not None else end) - w.created for w in every)
