"""Pure status computation for a BookGenQueue, following the Kubernetes API conventions.

Conditions carry `type`, `status`, `reason`, `message`, `lastTransitionTime` (changed only when
`status` changes, so `kubectl wait` and alerting see real transitions) and `observedGeneration`.
`status_patch()` returns only what differs from the stored status, so an unchanged system makes
no status write. Per-pool fields owned by the autoscaler (busyWorkers, pending, inFlight, reason,
lastScaleTime, observationAgeSeconds, desiredReplicas) are never touched here: a merge patch of
`pools.<name>` leaves them as they are.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bookgen_operator.core.objects import JSON, Body

CONDITION_TYPES = ("Ready", "RedisReady", "WorkersReady", "FlowerReady", "Autoscaling")


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool | None  # None = Unknown
    reason: str
    message: str

    @property
    def status_text(self) -> str:
        return "Unknown" if self.status is None else str(self.status)


@dataclass(frozen=True)
class PoolState:
    """What reconcile knows about one pool's Deployment."""

    name: str
    exists: bool
    replicas: int  # pods that exist (status.replicas)
    ready: int  # status.readyReplicas
    requested: int  # spec.replicas


def now_iso() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def deployment_state(name: str, obj: Body | None) -> PoolState:
    if obj is None:
        return PoolState(name, False, 0, 0, 0)
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    return PoolState(name, True, int(status.get("replicas") or 0), int(status.get("readyReplicas") or 0),
                     int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1))


def ready_count(obj: Body | None) -> int:
    return int(((obj or {}).get("status") or {}).get("readyReplicas") or 0)


def component_conditions(
    *,
    redis_external: bool,
    redis: Body | None,
    pools: Sequence[PoolState],
    flower_enabled: bool,
    flower: Body | None,
    autoscaling: Condition,
    problems: Mapping[str, str] | None = None,
) -> list[Condition]:
    """RedisReady, WorkersReady, FlowerReady, Autoscaling and the Ready summary. `problems`: why pods
    do not run, by owner (`worker/<pool>`, `redis`, `flower`; core/pod_problems.py), said where they
    belong."""
    why = problems or {}

    def waiting(what: str, owner: str) -> str:
        return f"waiting for the {what} pod to become ready" + (f": {why[owner]}" if owner in why else "")

    def pool(p: PoolState) -> str:
        problem = why.get(f"worker/{p.name}")
        return f"{p.name} {p.ready}/{p.requested}" + (f" ({problem})" if problem and p.ready < p.requested else "")

    if redis_external:
        redis_cond = Condition("RedisReady", True, "External", "external Redis is used (not probed by the operator)")
    elif ready_count(redis) >= 1:
        redis_cond = Condition("RedisReady", True, "RedisReady", "the Redis pod is ready")
    else:
        redis_cond = Condition("RedisReady", False, "RedisNotReady", waiting("Redis", "redis"))

    starving = [p for p in pools if p.requested > 0 and p.ready < 1]
    if not pools:
        workers_cond = Condition("WorkersReady", False, "NoPools", "no worker pools are declared")
    elif starving:
        listed = ", ".join(pool(p) for p in starving)
        workers_cond = Condition("WorkersReady", False, "PoolsNotReady", f"pools without a ready worker: {listed}")
    else:
        summary = ", ".join(pool(p) for p in pools)
        workers_cond = Condition("WorkersReady", True, "PoolsServing", f"ready workers per pool: {summary}")

    if not flower_enabled:
        flower_cond = Condition("FlowerReady", True, "Disabled", "Flower is disabled in the spec")
    elif ready_count(flower) >= 1:
        flower_cond = Condition("FlowerReady", True, "FlowerReady", "the Flower pod is ready")
    else:
        flower_cond = Condition("FlowerReady", False, "FlowerNotReady", waiting("Flower", "flower"))

    failing = [c for c in (redis_cond, workers_cond, flower_cond) if c.status is not True]
    if failing:
        ready = Condition("Ready", False, failing[0].reason, "; ".join(c.message for c in failing))
    else:
        ready = Condition("Ready", True, "AllComponentsReady", "Redis, workers and Flower are ready")
    return [ready, redis_cond, workers_cond, flower_cond, autoscaling]


def merge_conditions(old: Sequence[Body], new: Sequence[Condition], generation: int | None,
                     now: str) -> list[JSON]:
    """The full conditions list: `lastTransitionTime` kept unless the status changes; others kept."""
    by_type = {c.get("type"): dict(c) for c in old}
    for cond in new:
        previous = by_type.get(cond.type, {})
        changed = previous.get("status") != cond.status_text
        entry: JSON = {"type": cond.type, "status": cond.status_text, "reason": cond.reason,
                       "message": cond.message[:32768],
                       "lastTransitionTime": now if changed or "lastTransitionTime" not in previous
                       else previous["lastTransitionTime"]}
        if generation is not None:
            entry["observedGeneration"] = generation
        by_type[cond.type] = entry
    order = {t: i for i, t in enumerate(CONDITION_TYPES)}
    return sorted(by_type.values(), key=lambda c: order.get(c.get("type", ""), len(order)))


def desired_status(old_status: Body, *, generation: int | None, conditions: Sequence[Condition],
                   pools: Sequence[PoolState] | None, now: str) -> JSON:
    """The status fields reconcile owns (conditions, observedGeneration, per-pool replicas, workers)."""
    status: JSON = {"conditions": merge_conditions(old_status.get("conditions") or [], conditions, generation, now)}
    if generation is not None:
        status["observedGeneration"] = generation
    if pools is not None:
        current: JSON = {p.name: {"replicas": p.replicas, "readyReplicas": p.ready} for p in pools}
        gone = {name: None for name in (old_status.get("pools") or {}) if name not in current}
        status["pools"] = {**current, **gone}  # None: a merge patch removes pools no longer in the spec
        status["workers"] = sum(p.ready for p in pools)
    return status


def status_patch(old_status: Body, new_status: Body) -> JSON | None:
    """A merge patch of `status` with only the differing parts; None when nothing differs."""
    patch: JSON = {}
    for key, value in new_status.items():
        old = old_status.get(key)
        if key == "pools" and isinstance(value, Mapping):
            old_pools = old if isinstance(old, Mapping) else {}
            pools_patch = {name: fields for name, fields in value.items()
                           if (fields is None and name in old_pools)
                           or (fields is not None
                               and any((old_pools.get(name) or {}).get(k) != v for k, v in fields.items()))}
            if pools_patch:
                patch["pools"] = pools_patch
        elif old != value:
            patch[key] = value
    return patch or None
