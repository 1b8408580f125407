"""The controllers bench/simulate.py compares: ours (the real decide()), KEDA + HPA (defaults and tuned),
and an oracle that knows the trace.

KEDA + HPA at defaults: Redis list scaler `listLength: 5`, `activationListLength: 0`, pollingInterval
30 s, cooldownPeriod 300 s, minReplicaCount 0; HPA sync 15 s, tolerance 0.1, scale-up max(+100 %,
+4 pods) per 15 s, scale-down stabilisation 300 s; AverageValue target: desired = ceil(metric /
listLength). The scaler reads `LLEN` of the base list only (priority 10 tasks with the default
steps; priority 8 and the default 5 live in other lists) and no in-flight tasks. The HPA gets a
fresh value on every sync (KEDA's metrics adapter queries the scaler per request); activation
0 -> 1 and deactivation after the cooldown happen at KEDA's polls.

KEDA tuned, like for like with ours: the metric counts every priority list plus the tasks in flight
(one Redis trigger per list and a `scalingModifiers` formula adding them and the in-flight count),
HPA scale-down stabilisation 30 s, cooldownPeriod 30 s, pollingInterval 5 s, scale-up uncapped
(a `behavior.scaleUp` policy of 1000 % per 15 s). The HPA still syncs every 15 s (a controller
manager flag, not per HPA). Neither KEDA model sets pod-deletion-cost: victims are what the
ReplicaSet controller picks (sim_pool.replicaset_order).

The oracle knows every arrival and duration in advance: it runs our control law (targetWaitSeconds
as its knob) on the exact mean duration of the waiting work and on the queue as it will be once a
worker started now is ready (every arrival of the next `startup` seconds counted already), so it
never lags the start-up time and never guesses a service time. That is the limit of what better
information buys this control law, not a proven optimum; the work floor (total task time /
concurrency) is the hard lower bound on worker-seconds at any wait.
"""

from __future__ import annotations

import bisect
import math
from collections import deque

from bookgen_operator.core.autoscaler.decide import decide
from bookgen_operator.core.autoscaler.history import History
from bookgen_operator.core.autoscaler.observation import Observation
from bookgen_operator.core.autoscaler.policy import Policy
from bookgen_operator.core.autoscaler.rates import RateWindow, Totals

from bench.sim_pool import Order, Pool, replicaset_order
from bench.traces import Arrival


class Ours:
    def __init__(self, policy: Policy, concurrency: int, name: str = "ours") -> None:
        self.policy, self.concurrency, self.name = policy, concurrency, name
        self.history = History()
        self.rates = RateWindow()

    def tick(self, pool: Pool, now: float) -> None:
        if now % self.policy.poll_interval:
            return
        self.rates.add(now, Totals(pool.sent, pool.finished, pool.runtime_sum))
        busy = pool.busy()
        obs = Observation("content", pool.pending, pool.in_flight, pool.oldest_age(now), len(pool.workers),
                          len(busy), self.concurrency, now, self.rates.service_time(), self.rates.arrival_rate())
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
    def __init__(self, *, tuned: bool = False, list_length: float = 5, max_replicas: int = 40,
                 poll: int | None = None) -> None:
        self.tuned, self.list_length, self.max_replicas = tuned, list_length, max_replicas
        self.name = "KEDA tuned" if tuned else "KEDA defaults"
        self.poll, self.sync, self.tolerance = (5, 15, 0.1) if tuned else (30, 15, 0.1)
        if poll is not None:  # pollingInterval (bench/real_autoscale.py gives tuned KEDA our 1 s)
            self.poll = poll
        self.cooldown, self.down_window = (30, 30) if tuned else (300, 300)
        self.last_active = -math.inf
        self.recommendations: deque[tuple[float, int]] = deque()

    def metric(self, pool: Pool) -> int:
        return pool.pending + pool.in_flight if self.tuned else pool.base_pending

    def tick(self, pool: Pool, now: float) -> None:
        order: Order = lambda pods, at: replicaset_order(pods, at, use_cost=False)  # noqa: E731
        if now % self.poll == 0:
            if self.metric(pool) > 0:  # activationListLength 0
                self.last_active = now
                if not pool.workers:
                    pool.scale(1, now, order)
            elif pool.workers and now - self.last_active >= self.cooldown:
                pool.scale(0, now, order)
                self.recommendations.clear()
        if now % self.sync == 0 and pool.workers:
            self.hpa(pool, now, order)

    def hpa(self, pool: Pool, now: float, order: Order) -> None:
        current = len(pool.workers)
        value = self.metric(pool)
        ratio = value / (self.list_length * current)
        rec = current if abs(ratio - 1) <= self.tolerance else math.ceil(value / self.list_length)
        rec = max(1, min(self.max_replicas, rec))  # the HPA's minReplicas is max(minReplicaCount, 1)
        self.recommendations.append((now, rec))
        while self.recommendations and self.recommendations[0][0] <= now - self.down_window:
            self.recommendations.popleft()
        down = max(r for _, r in self.recommendations)
        desired = current
        if desired < rec:  # scale-up stabilisation window 0: this recommendation
            desired = rec
        if desired > down:
            desired = down
        if desired > current:
            cap = current * 11 if self.tuned else max(2 * current, current + 4)
            desired = min(desired, cap, self.max_replicas)
        pool.scale(desired, now, order)


class Oracle:
    """Our control law with perfect information: the exact mean duration of the waiting work and, for
    the worker start-up time, foresight of every arrival (it sizes the pool for the queue as it will be
    when a worker started now is ready). Victims are idle pods only."""

    def __init__(self, trace: list[Arrival], *, target_wait: float, concurrency: int, startup: float,
                 max_replicas: int = 40) -> None:
        self.name = "oracle"
        self.concurrency, self.startup = concurrency, startup
        self.policy = Policy(min_replicas=0, max_replicas=max_replicas, target_wait=target_wait)
        self.history = History()
        self.times = [a.at for a in trace]
        self.durations = [a.duration for a in trace]

    def tick(self, pool: Pool, now: float) -> None:
        i, j = bisect.bisect_right(self.times, now), bisect.bisect_right(self.times, now + self.startup)
        waiting = [t.arrival.duration for lst in pool.lists for t in lst] + self.durations[i:j]
        service = sum(waiting) / len(waiting) if waiting else None
        obs = Observation("content", len(waiting), pool.in_flight, None, len(pool.workers), len(pool.busy()),
                          self.concurrency, now, service, None)
        decision = decide(obs, self.policy, self.history, now)
        if decision.recommendation is not None:
            self.history.record(now, decision.recommendation, self.policy.scale_down_window + 1)
        if decision.changed:
            for worker in pool.workers:
                worker.cost = 1_000_000 if worker.running else 0
            pool.scale(decision.desired, now, lambda pods, at: replicaset_order(pods, at, use_cost=True))
            self.history.scaled(now, decision.desired)
