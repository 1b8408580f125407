"""Replay load traces through a worker-pool model: our autoscaler beside a faithful KEDA + HPA model.

    .venv/bin/python -m bench.simulate [--seed 1] [--trace bursty] [--startup 15] [--concurrency 2]
                                       [--plot docs/autoscaling-bursty.png]

The pool model (1 s ticks): tasks wait in kombu's priority lists (base list first, FIFO within a
list); a worker is ready `--startup` seconds after its pod is created and runs `--concurrency`
tasks at once. A removed pod gets SIGTERM (warm shutdown: no new tasks) and is killed after its
grace period; tasks still running then are killed and requeued (generously at the head of their list,
not after the visibility timeout). Worker-seconds run from pod creation to exit.

Ours: the real `decide()` with the Policy defaults, polled every second on exact pending + in-flight;
scale-in marks busy pods with a deletion cost (the ReplicaSet removes unready, then cheapest, then
newest pods) and grace covers the time limit.

KEDA + HPA, defaults (Redis list scaler `listLength: 5`, `activationListLength: 0`, pollingInterval
30 s, cooldownPeriod 300 s, minReplicaCount 0; HPA sync 15 s, tolerance 0.1, scale-up max(+100 %,
+4 pods) per 15 s, scale-down stabilisation 300 s, -100 % per 15 s; AverageValue target: desired =
ceil(list length / 5)). The scaler reads `LLEN` of the base list only (priority 10..8 tasks; the
default priority 5 lives in another list) and no in-flight tasks. The HPA gets a fresh value on every
sync (KEDA's metrics adapter queries the scaler per request); activation 0 -> 1 and deactivation
after the cooldown happen at KEDA's 30 s polls. Scale-in victims: unready, then newest pods
(no deletion cost), grace period 30 s (the Kubernetes default). "KEDA (all lists)" is the same
model counting every priority list, to show how much of the gap is the undercount alone.

`--plot PATH` also draws, for one trace (the `--trace` given, else bursty), queue depth and replicas
over time for the three models (bench/plot_simulation.py; needs the `bench` extra: matplotlib).
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import math
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from bookgen_operator.autoscaler.decide import decide
from bookgen_operator.autoscaler.history import History
from bookgen_operator.autoscaler.observation import Observation
from bookgen_operator.autoscaler.policy import Policy
from bookgen_worker.queues import priority_step, transport_priority

from bench.traces import TRACES, Arrival, make

STEPS = (0, 3, 6, 9)
DURATION = {"steady": 3600, "bursty": 3600, "diurnal": 7200, "spike-to-zero": 3600}
TAIL = 900  # seconds simulated after the trace, so scale-in (and its cost) is counted
MIN_REPLICAS, MAX_REPLICAS = 0, 40


class Sample(NamedTuple):
    """The pool at the end of one tick (after dispatch and the controller's decision), for --plot."""

    at: int
    pending: int  # waiting in any priority list
    base_pending: int  # waiting in the base list only: what KEDA+HPA's scaler reads
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
    running: list[Task] = field(default_factory=list)
    removed_at: float | None = None
    gone_at: float | None = None
    cost: int = 0


class Pool:
    def __init__(self, concurrency: int, startup: float, grace: float) -> None:
        self.concurrency, self.startup, self.grace = concurrency, startup, grace
        self.lists: list[deque[Task]] = [deque() for _ in STEPS]
        self.workers: list[Worker] = []  # not removed
        self.draining: list[Worker] = []
        self.gone: list[Worker] = []
        self.running: list[tuple[float, int, Task, Worker]] = []
        self.seq = itertools.count()
        self.actions = 0
        self.killed = 0
        self.in_flight = 0

    def enqueue(self, task: Task, *, front: bool = False) -> None:
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

    def scale(self, replicas: int, now: float, order: Callable[[list[Worker], float], list[Worker]]) -> None:
        current = len(self.workers)
        if replicas == current:
            return
        self.actions += 1
        if replicas > current:
            self.workers += [Worker(now, now + self.startup) for _ in range(replicas - current)]
            return
        for victim in order(self.workers, now)[: current - replicas]:
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


def replicaset_order(pods: list[Worker], now: float, *, use_cost: bool) -> list[Worker]:
    """The ReplicaSet controller's victim order: unready first, then lower deletion cost, then newest."""
    return sorted(pods, key=lambda w: (w.ready_at <= now, w.cost if use_cost else 0, -w.created))


class Ours:
    name = "ours"

    def __init__(self, policy: Policy, concurrency: int) -> None:
        self.policy, self.concurrency = policy, concurrency
        self.history = History()

    def tick(self, pool: Pool, now: float) -> None:
        if now % self.policy.poll_interval:
            return
        busy = pool.busy()
        obs = Observation("content", pool.pending, pool.in_flight, pool.oldest_age(now), len(pool.workers),
                          len(busy), self.concurrency, now)
        decision = decide(obs, self.policy, self.history, now)
        if decision.recommendation is not None:
            self.history.record(now, decision.recommendation,
                                max(self.policy.scale_up_window, self.policy.scale_down_window) + 1)
        if decision.changed:
            for worker in pool.workers:  # pod-deletion-cost, set just before scaling
                worker.cost = 1_000_000 if worker.running else 0
            pool.scale(decision.desired, now, lambda pods, at: replicaset_order(pods, at, use_cost=True))
            self.history.scaled(now, decision.desired)


class Keda:
    POLL, SYNC, COOLDOWN, LIST_LENGTH, TOLERANCE, DOWN_WINDOW = 30, 15, 300, 5, 0.1, 300

    def __init__(self, all_lists: bool = False) -> None:
        self.all_lists = all_lists
        self.name = "KEDA (all lists)" if all_lists else "KEDA+HPA"
        self.last_active = -math.inf
        self.recommendations: deque[tuple[float, int]] = deque()

    def metric(self, pool: Pool) -> int:
        return pool.pending if self.all_lists else pool.base_pending

    def tick(self, pool: Pool, now: float) -> None:
        order = lambda pods, at: replicaset_order(pods, at, use_cost=False)  # noqa: E731
        if now % self.POLL == 0:
            if self.metric(pool) > 0:  # activationListLength 0
                self.last_active = now
                if not pool.workers:
                    pool.scale(1, now, order)
            elif pool.workers and now - self.last_active >= self.COOLDOWN:
                pool.scale(0, now, order)
                self.recommendations.clear()
        if now % self.SYNC == 0 and pool.workers:
            self.hpa(pool, now, order)

    def hpa(self, pool: Pool, now: float, order: Callable[[list[Worker], float], list[Worker]]) -> None:
        current = len(pool.workers)
        value = self.metric(pool)
        ratio = value / (self.LIST_LENGTH * current)
        rec = current if abs(ratio - 1) <= self.TOLERANCE else math.ceil(value / self.LIST_LENGTH)
        rec = max(1, min(MAX_REPLICAS, rec))  # the HPA's minReplicas is max(minReplicaCount, 1)
        self.recommendations.append((now, rec))
        while self.recommendations and self.recommendations[0][0] <= now - self.DOWN_WINDOW:
            self.recommendations.popleft()
        down = max(r for _, r in self.recommendations)
        desired = current
        if desired < rec:  # scale-up stabilisation window 0: this recommendation
            desired = rec
        if desired > down:
            desired = down
        if desired > current:  # the previous sync's scale event is exactly one period old: not counted
            desired = min(desired, max(2 * current, current + 4), MAX_REPLICAS)
        pool.scale(desired, now, order)


@dataclass(frozen=True)
class Result:
    waits: list[float]
    worker_seconds: float
    actions: int
    killed: int
    unfinished: int

    def pct(self, q: float) -> float:
        if not self.waits:
            return float("nan")
        ordered = sorted(self.waits)
        return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def run(trace: list[Arrival], controller: Ours | Keda, *, duration: int, concurrency: int, startup: float,
        grace: float, record: list[Sample] | None = None) -> Result:
    pool = Pool(concurrency, startup, grace)
    tasks = [Task(a) for a in trace]
    index, now = 0, 0
    horizon = duration + TAIL
    while now <= horizon or ((pool.pending or pool.in_flight) and now <= horizon + 4 * 3600):
        while index < len(tasks) and tasks[index].arrival.at <= now:
            pool.enqueue(tasks[index])
            index += 1
        pool.step(now)
        controller.tick(pool, now)
        if record is not None:
            record.append(Sample(now, pool.pending, pool.base_pending, pool.in_flight, len(pool.workers)))
        now += 1
    done = [t for t in tasks if t.end is not None]
    return Result([t.start - t.arrival.at for t in done if t.start is not None], pool.worker_seconds(now),
                  pool.actions, pool.killed, len(tasks) - len(done))


def table(name: str, trace: list[Arrival], results: list[tuple[str, Result]]) -> str:
    width = 18
    rows = [f"{name}: {len(trace)} tasks", " " * 22 + "".join(f"{label:>{width}}" for label, _ in results)]

    def row(label: str, values: list[str]) -> None:
        rows.append(f"  {label:<20}" + "".join(f"{v:>{width}}" for v in values))

    for q in (0.50, 0.95, 0.99):
        row(f"queue wait p{int(q * 100)} (s)", [f"{r.pct(q):.1f}" for _, r in results])
    row("worker-seconds", [f"{r.worker_seconds:,.0f}" for _, r in results])
    row("scaling actions", [str(r.actions) for _, r in results])
    row("tasks killed", [str(r.killed) for _, r in results])
    if any(r.unfinished for _, r in results):
        row("never finished", [str(r.unfinished) for _, r in results])
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--trace", choices=sorted(TRACES), action="append")
    parser.add_argument("--startup", type=float, default=15.0, help="seconds from pod creation to a ready worker")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--plot", metavar="PATH", help="also draw queue depth and replicas over time for one trace "
                        "(the --trace given, else bursty) to this PNG")
    args = parser.parse_args(argv)
    plot_name = None
    if args.plot:
        if args.trace and len(args.trace) > 1:
            parser.error("--plot draws one trace: give at most one --trace")
        try:
            from bench.plot_simulation import plot
        except ModuleNotFoundError as exc:
            if (exc.name or "").partition(".")[0] != "matplotlib":
                raise
            parser.exit(2, "--plot needs matplotlib: pip install -e '.[bench]'\n")
        plot_name = args.trace[0] if args.trace else "bursty"
        series: list[tuple[str, list[Sample]]] = []
        plotted: list[tuple[str, Result]] = []
    policy = Policy(min_replicas=MIN_REPLICAS, max_replicas=MAX_REPLICAS)
    started = time.perf_counter()
    print(f"seed {args.seed}, concurrency {args.concurrency}, worker startup {args.startup:g} s, "
          f"replicas {MIN_REPLICAS}..{MAX_REPLICAS}; ours: Policy defaults (target {policy.target_per_slot:g} "
          f"per slot, oldest-age guard {policy.target_oldest_age:g} s, scale-down window "
          f"{policy.scale_down_window:g} s, poll {policy.poll_interval:g} s)\n")
    verdict = ""
    for name in args.trace or list(TRACES):
        trace = make(name, args.seed)
        results = []
        models = ((Ours(policy, args.concurrency), 3600.0), (Keda(), 30.0), (Keda(all_lists=True), 30.0))
        for controller, grace in models:
            record: list[Sample] | None = [] if name == plot_name else None
            result = run(trace, controller, duration=DURATION[name], concurrency=args.concurrency,
                         startup=args.startup, grace=grace, record=record)
            results.append((controller.name, result))
            if record is not None:
                series.append((controller.name, record))
        print(table(name, trace, results) + "\n")
        if name == plot_name:
            plotted = results
        if name == "bursty":
            ours, keda = results[0][1], results[1][1]
            ok = ours.pct(0.95) <= keda.pct(0.95) and ours.worker_seconds < keda.worker_seconds and ours.killed == 0
            verdict = (f"bursty: ours p95 {ours.pct(0.95):.1f} s vs KEDA {keda.pct(0.95):.1f} s, worker-seconds "
                       f"{ours.worker_seconds:,.0f} vs {keda.worker_seconds:,.0f}, killed {ours.killed} vs "
                       f"{keda.killed} -> {'meets' if ok else 'MISSES'} the acceptance bar")
    if verdict:
        print(verdict)
    print(f"(simulated in {time.perf_counter() - started:.1f} s)")
    if plot_name:
        plot(args.plot, trace_name=plot_name, seed=args.seed, series=series, results=plotted,
             end=DURATION[plot_name] + TAIL, trace_end=DURATION[plot_name], tasks=len(make(plot_name, args.seed)),
             concurrency=args.concurrency, startup=args.startup)
        print(f"wrote {args.plot} ({plot_name}, seed {args.seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
