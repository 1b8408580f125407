"""The decision core: observation + policy + history + clock -> desired replicas and why. Pure.

Steps (each one is named in the reason when it changed the outcome):

1. Stale or missing metrics -> `fallback_replicas` if set, else keep the current count. Missing is
   never read as zero: an exporter outage must not scale a busy fleet in.
2. raw = ceil((pending + in flight) / (target_per_slot * concurrency)). In-flight tasks count,
   because a worker running them is needed until they finish (KEDA's list length misses them).
   With a latency target (`target_wait`) and a known service time, raw comes from
   wait_recommendation() instead. Optional boost while the oldest pending task is older than
   `target_oldest_age`.
3. Scale to zero: an empty pool wakes only when demand reaches `activation_threshold`.
4. Clamp to [min, max]; inside the tolerance band keep the current count (no flapping).
5. Stabilisation like the HPA's behaviour: up to the *lowest* recommendation of the scale-up window
   (window 0 = this one: the full target in one step), down only to the *highest* recommendation of
   the scale-down window. Then at most `max_step` per decision.
6. Never below the number of busy workers (a busy worker is a replica that must stay).
"""

from __future__ import annotations

import math

from bookgen_operator.core.autoscaler.history import History
from bookgen_operator.core.autoscaler.observation import Decision, Observation
from bookgen_operator.core.autoscaler.policy import Policy

#: The oldest-age boost multiplies the demand-based recommendation by at most this.
MAX_AGE_BOOST = 3.0


def _num(x: float) -> str:
    return f"{x:g}"


def _clamp(value: int, policy: Policy) -> int:
    return max(policy.min_replicas, min(policy.max_replicas, value))


#: The backlog is sized to start within this share of the target wait (see wait_slots).
DRAIN_SHARE = 0.5


def wait_slots(pending: int, service_time: float, target_wait: float) -> float:
    """Slots that start the waiting tasks within the target wait W, given service time S (pure).

    Busy slots free up at a rate of slots / S, so the `pending` tasks have all started after
    pending * S / slots seconds. Sizing that to W/2 puts the mean wait near W/2 and the p95 near W:
    with priorities, a low-priority task is overtaken by every urgent one sent after it, so the
    tail waits about twice the mean (bench/simulate.py --target-wait: p95 within +-25 % of W for
    task durations x0.25 to x3 on the steady trace). In a steady state the backlog settles where
    the pool carries the offered load (arrival rate x S slots): a fixed per-slot target instead
    makes the wait grow with the task duration.

    No floor from the arrival rate: in the simulation one at the offered load kept the queue so
    short that p95 stayed at 0.4 W whatever W was (more workers than the target needs).
    """
    return pending * service_time / (target_wait * DRAIN_SHARE)


def _wait_target(obs: Observation, policy: Policy) -> tuple[int, str] | None:
    if policy.target_wait is None or obs.service_time is None or obs.service_time <= 0:
        return None
    slots = wait_slots(obs.demand_pending or 0, obs.service_time, policy.target_wait)
    rate = f", {_num(round(obs.arrival_rate, 2))}/s arriving" if obs.arrival_rate is not None else ""
    note = (f"{obs.demand_pending} pending + {obs.demand_in_flight} in flight, tasks take "
            f"{_num(round(obs.service_time, 1))} s{rate}, target wait {_num(policy.target_wait)} s")
    return math.ceil(slots / max(1, obs.concurrency) - 1e-9), note


def raw_recommendation(obs: Observation, policy: Policy) -> tuple[int, list[str]]:
    """Replicas the demand alone asks for (steps 2-3), with notes for the reason."""
    notes: list[str] = []
    demand = obs.demand
    waited = _wait_target(obs, policy)
    per_slot = math.ceil(demand / (policy.target_per_slot * max(1, obs.concurrency)))
    raw = waited[0] if waited is not None else per_slot
    age_target = policy.target_oldest_age
    if age_target and obs.oldest_age is not None and (obs.demand_pending or 0) > 0 and obs.oldest_age > age_target:
        # Relative to what demand asks for, not to the current count: a boost on the current count
        # would compound every poll while the old task waits for a worker to start.
        boost = math.ceil(max(raw, 1) * min(obs.oldest_age / age_target, MAX_AGE_BOOST))
        if boost > raw:
            raw = boost
            notes.append(f"oldest task waits {_num(round(obs.oldest_age, 1))} s > target {_num(age_target)} s")
    if obs.current_replicas == 0 and policy.min_replicas == 0:
        if demand < policy.activation_threshold:
            if demand > 0:
                notes.append(f"below activation threshold {policy.activation_threshold}")
            raw = 0
        else:
            raw = max(raw, 1)
    return raw, notes


def _demand_text(obs: Observation, policy: Policy) -> str:
    waited = _wait_target(obs, policy)
    slots = f", {obs.concurrency} slots per worker" if obs.concurrency > 1 else ""
    if waited is not None:
        return waited[1] + slots
    return (f"{obs.demand_pending} pending + {obs.demand_in_flight} in flight, "
            f"target {_num(policy.target_per_slot)} per slot{slots}")


def _floor_busy(desired: int, obs: Observation, notes: list[str]) -> int:
    if desired < obs.busy_workers:
        notes.append(f"kept {obs.busy_workers} busy workers")
        return obs.busy_workers
    return desired


def _fallback(obs: Observation, policy: Policy, why: str) -> Decision:
    notes = [why]
    if policy.fallback_replicas is not None:
        desired = _clamp(policy.fallback_replicas, policy)
        notes.append(f"fallback {desired}")
    else:
        # Hold the current count (bounds still apply: a user may have just changed them).
        desired = _clamp(obs.current_replicas, policy)
        notes.append("holding")
    desired = _floor_busy(desired, obs, notes)
    arrow = f"{obs.current_replicas} → {desired}" if desired != obs.current_replicas else f"{desired}"
    return Decision(desired, f"{obs.pool}: {arrow} ({'; '.join(notes)})", desired != obs.current_replicas)


def decide_unknown(pool: str, policy: Policy, history: History) -> Decision:
    """Nothing at all is known (not even the current replicas): fall back or change nothing."""
    if policy.fallback_replicas is not None:
        desired = _clamp(policy.fallback_replicas, policy)
        return Decision(desired, f"{pool}: {desired} (no observation; fallback {desired})", True)
    keep = history.last_desired if history.last_desired is not None else policy.min_replicas
    return Decision(keep, f"{pool}: no observation; holding", False)


def decide(observation: Observation | None, policy: Policy, history: History, now: float,
           *, pool: str = "") -> Decision:
    """The desired replicas of one pool now (see the module docstring). Does not modify `history`."""
    if observation is None:
        return decide_unknown(pool, policy, history)
    obs = observation
    if obs.metrics_missing:
        return _fallback(obs, policy, "metrics missing")
    age = now - obs.observed_at
    if age > policy.stale_after:
        return _fallback(obs, policy, f"metrics stale ({_num(round(age, 1))} s old > {_num(policy.stale_after)} s)")

    current = obs.current_replicas
    raw, notes = raw_recommendation(obs, policy)
    rec = _clamp(raw, policy)
    if rec != raw:
        notes.append(f"clamped to {policy.min_replicas}..{policy.max_replicas}")
    if current > 0 and policy.min_replicas <= current <= policy.max_replicas and rec != current \
            and abs(rec / current - 1) <= policy.tolerance:
        notes.append(f"{rec} is within tolerance {_num(policy.tolerance)}")
        rec = current

    # HPA-style stabilisation: the up recommendation is the lowest of the up window, the down
    # recommendation the highest of the down window (both include this one, so up <= rec <= down).
    up = min([*history.within(now, policy.scale_up_window), rec])
    down = max([*history.within(now, policy.scale_down_window), rec])
    desired = current
    if desired < up:
        desired = up
        if up < rec:
            notes.append(f"scale-up window {_num(policy.scale_up_window)} s holds {up}")
    elif desired > down:
        desired = down
    if rec < desired <= current and desired == down and down > rec:
        notes.append(f"scale-down window {_num(policy.scale_down_window)} s holds {down}")
    if policy.max_step is not None and abs(desired - current) > policy.max_step:
        desired = current + policy.max_step if desired > current else current - policy.max_step
        notes.append(f"max step {policy.max_step}")
    desired = _clamp(desired, policy)
    desired = _floor_busy(desired, obs, notes)

    arrow = f"{current} → {desired}" if desired != current else f"{desired}"
    extra = f"; {'; '.join(notes)}" if notes else ""
    return Decision(desired, f"{obs.pool}: {arrow} ({_demand_text(obs, policy)}{extra})", desired != current, rec)
