"""Leader election on a `coordination.k8s.io/v1` Lease, the way controller-runtime's operators do it.

Why a Lease and not kopf peering: kopf peering pauses *every* operator of equal priority when it
sees another (so two replicas of one Deployment freeze each other unless each gets a distinct
priority by hand), needs its own CRDs and RBAC, and keeps handlers and daemons of a paused
operator in memory. A Lease is a built-in object, the standby runs no handler at all (it has not
even started kopf), and the hand-over timing is ours to bound:

- the leader renews every `retry` seconds; if it has not renewed for `renew_deadline` seconds (API
  unreachable, process frozen) it stops writing at once (`leading()` turns False, every write of
  `client.Kube` checks it) and exits, so Kubernetes restarts it as a standby;
- a standby takes the Lease only after it has seen the same record unchanged for the whole
  lease `duration` on *its own* clock (no clock comparison across nodes), so the old leader has
  stopped writing (`renew_deadline` < `duration`) before a new one starts;
- on SIGTERM the leader releases the Lease after kopf has stopped, so a rollout hands over at once.

Takeover after the leader dies: at most `standby_poll` + `duration` + `standby_poll` seconds after
its last renewal (1 + 8 + 1 = 10 s by default), then kopf's start-up. The leader's renewals are the
operator's only steady writes (a Lease PATCH every `retry` = 2 s, as controller-runtime's).
Writes to the Lease carry its resourceVersion, so of two standbys racing, the API server lets one win.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import time
from collections.abc import Callable

from bookgen_operator.controller.client import RESOURCES, Kube, KubeError
from bookgen_operator.core.objects import JSON, Body

log = logging.getLogger(__name__)

LEASES = RESOURCES[("coordination.k8s.io/v1", "Lease")]


@dataclasses.dataclass(frozen=True)
class LeaseTimings:
    """The election's clock (seconds; OperatorConfig reads them from BOOKGEN_LEASE_*)."""

    duration: float = 8.0
    renew_deadline: float = 5.0
    retry: float = 2.0
    #: A standby only reads; it looks often so that it notices the last renewal within a second.
    standby_poll: float = 1.0


def micro_time(now: datetime.datetime | None = None) -> str:
    """A Lease's MicroTime (RFC 3339 with microseconds)."""
    return (now or datetime.datetime.now(tz=datetime.UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclasses.dataclass
class Observation:
    """The last Lease record seen and when (on this process's monotonic clock)."""

    record: tuple[object, ...] | None = None
    seen_at: float = 0.0


def record_of(lease: Body | None) -> tuple[object, ...] | None:
    if lease is None:
        return None
    spec = lease.get("spec") or {}
    return (spec.get("holderIdentity"), spec.get("renewTime"), spec.get("leaseDurationSeconds"),
            spec.get("leaseTransitions"))


def may_take(lease: Body | None, me: str, seen: Observation, now: float,
             default_duration: float = LeaseTimings.duration) -> bool:
    """Pure decision: may `me` write itself into this Lease now? Updates `seen` as a side record."""
    record = record_of(lease)
    if record != seen.record:
        seen.record, seen.seen_at = record, now
    if lease is None:
        return True
    holder = (lease.get("spec") or {}).get("holderIdentity") or ""
    if holder in ("", me):
        return True
    duration = float((lease.get("spec") or {}).get("leaseDurationSeconds") or default_duration)
    return now - seen.seen_at >= duration


class Leadership:
    """Is this process the leader right now? True when no election is configured (one replica).
    One per operator process, in its OperatorContext: every write of its Kube checks `leading()`."""

    def __init__(self, renew_deadline: float = LeaseTimings.renew_deadline) -> None:
        self.renew_deadline = renew_deadline
        self.elected = False
        self.renewed_at: float | None = None

    def leading(self) -> bool:
        if not self.elected:
            return True
        return self.renewed_at is not None and time.monotonic() - self.renewed_at < self.renew_deadline


class LeaderElector:
    def __init__(self, kube: Kube, namespace: str, name: str, me: str, leadership: Leadership,
                 timings: LeaseTimings = LeaseTimings(), clock: Callable[[], float] = time.monotonic) -> None:
        self.kube, self.namespace, self.name = kube, namespace, name
        self.me = me
        self.leadership, self.timings = leadership, timings
        self.clock = clock
        self.seen = Observation()
        leadership.elected = True

    def _spec(self, lease: Body | None) -> JSON:
        old = (lease or {}).get("spec") or {}
        now = micro_time()
        taking = old.get("holderIdentity") != self.me
        return {"holderIdentity": self.me, "leaseDurationSeconds": int(self.timings.duration), "renewTime": now,
                "acquireTime": now if taking else old.get("acquireTime", now),
                "leaseTransitions": int(old.get("leaseTransitions") or 0) + (1 if taking and lease else 0)}

    async def try_acquire_or_renew(self) -> bool:
        lease = await self.kube.get(LEASES, self.namespace, self.name)
        if not may_take(lease, self.me, self.seen, self.clock(), self.timings.duration):
            return False
        try:
            if lease is None:
                await self.kube.create(LEASES, self.namespace, {
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace}, "spec": self._spec(None)})
            else:
                rv = lease["metadata"]["resourceVersion"]
                await self.kube.patch(LEASES, self.namespace, self.name,
                                      {"metadata": {"resourceVersion": rv}, "spec": self._spec(lease)})
        except KubeError as exc:
            if exc.code == 409:  # another replica wrote first: it leads
                return False
            raise
        self.leadership.renewed_at = self.clock()
        return True

    async def acquire(self) -> None:
        """Wait until this process holds the Lease."""
        announced = False
        while True:
            try:
                if await self.try_acquire_or_renew():
                    log.info("leader election: %s leads (Lease %s/%s)", self.me, self.namespace, self.name)
                    return
            except (KubeError, OSError) as exc:
                log.warning("leader election: cannot read or write the Lease: %s", exc)
            if not announced:
                log.info("leader election: %s is on standby; another replica leads", self.me)
                announced = True
            await asyncio.sleep(self.timings.standby_poll)

    async def hold(self, on_lost: Callable[[], None]) -> None:
        """Renew until cancelled; call `on_lost` once the renew deadline passes without a renewal."""
        while True:
            await asyncio.sleep(self.timings.retry)
            try:
                if not await self.try_acquire_or_renew():
                    log.error("leader election: %s lost the Lease to another replica", self.me)
                    on_lost()
                    return
            except (KubeError, OSError) as exc:
                log.warning("leader election: renewal failed: %s", exc)
            if not self.leadership.leading():
                log.error("leader election: no renewal for %.0fs; stopping all writes", self.timings.renew_deadline)
                on_lost()
                return

    async def release(self) -> None:
        """Give the Lease up (on a clean stop) so a standby takes over without waiting for expiry."""
        self.leadership.renewed_at = None
        try:
            lease = await self.kube.get(LEASES, self.namespace, self.name)
            if lease and (lease.get("spec") or {}).get("holderIdentity") == self.me:
                await self.kube.patch(LEASES, self.namespace, self.name, {
                    "metadata": {"resourceVersion": lease["metadata"]["resourceVersion"]},
                    "spec": {"holderIdentity": "", "leaseDurationSeconds": 1, "renewTime": micro_time()}})
        except (KubeError, OSError) as exc:
            log.info("leader election: could not release the Lease (it expires by itself): %s", exc)
