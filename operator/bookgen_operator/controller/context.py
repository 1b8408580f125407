"""The operator process's one context: built once in main from its OperatorConfig, passed to every kopf
handler as `memo`.

kopf hands each resource object a shallow copy of the memo; the context is a frozen dataclass whose
fields are the shared objects themselves (the API client, the per-queue states, the child cache, the
autoscaler's scheduler...), so every copy reaches the same ones. Nothing of the operator's state lives in
a module variable: a test builds a context with short intervals and runs kopf with it, and the next test
builds a fresh one.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import overload

import kopf

from bookgen_operator.controller.actuator import ReplicaCache
from bookgen_operator.controller.child_cache import ChildCache
from bookgen_operator.controller.children import MONITORING_KINDS, PRUNABLE
from bookgen_operator.controller.client import Kube
from bookgen_operator.controller.config import OperatorConfig
from bookgen_operator.controller.leader import Leadership
from bookgen_operator.controller.scheduler import SchedulerThread
from bookgen_operator.core.objects import JSON
from bookgen_operator.core.reconcile import Learned, ObjectKey
from bookgen_operator.core.status import Condition

#: Blocking Redis calls share these threads (bounded: a hung Redis cannot exhaust the default executor
#: that kopf and asyncio.to_thread use). The polls themselves use no thread (redis.asyncio).
REDIS_THREADS = 8


@dataclasses.dataclass
class Connection:
    """kopf's login, as its login handler last returned it (read afresh by every API request)."""

    info: kopf.ConnectionInfo | None = None


@dataclasses.dataclass
class Discovery:
    """The API groups the server serves, and when they were read (monotonic seconds; 0 = never)."""

    fetched_at: float = 0.0
    groups: frozenset[str] = frozenset()


@dataclasses.dataclass
class QueueState:
    """In-memory per-queue bookkeeping (lost on restart, which only costs one extra reconcile)."""

    retry_delay: float
    lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)
    dirty: bool = False
    #: The trigger that made the running reconcile dirty (the strongest, if several).
    dirty_trigger: str | None = None
    invalid_generation: int | None = None
    retry_at: float = 0.0
    autoscaling: Condition | None = None
    warned_generation: int | None = None
    #: The generation whose child the API server refused (an Event once per generation, not per retry).
    rejected_generation: int | None = None
    #: The stored form of children we wrote (reconcile.learn): compare the way the server stores them.
    learned: dict[ObjectKey, Learned] = dataclasses.field(default_factory=dict)
    #: (generation, when) the queue's Secrets were last found complete: a timer reconcile re-reads them
    #: only every RESYNC_SECONDS (one GET per queue every 30 s was a sixth of the operator's requests).
    secrets_checked: tuple[int | None, float] | None = None

    def clean(self) -> None:
        """A run starts: what triggers arrive from now on makes it run again (reconciler.reconcile)."""
        self.dirty, self.dirty_trigger = False, None


@dataclasses.dataclass(frozen=True)
class OperatorContext:
    config: OperatorConfig
    connection: Connection
    #: Every write checks leadership (leader.py): a replica that lost its Lease never writes again.
    leadership: Leadership
    kube: Kube
    #: Per queue (by uid): see QueueState.
    states: dict[str, QueueState]
    #: The children as kopf's watches see them.
    children: ChildCache
    discovery: Discovery
    #: One scheduler steps the pools of every queue, on a thread and event loop of its own.
    scheduler: SchedulerThread
    #: Worker Deployments' spec.replicas as the watch saw them: the autoscaler's polls read no Deployment.
    replicas: ReplicaCache
    redis_executor: ThreadPoolExecutor
    #: Reconciles started per queue uid (the in-memory view of bookgen_operator_reconciles_total).
    reconciles: collections.Counter[str]

    @classmethod
    def build(cls, config: OperatorConfig) -> OperatorContext:
        connection = Connection()
        leadership = Leadership(config.renew_deadline)
        kube = Kube(lambda: connection.info, may_write=leadership.leading, user_agent=config.user_agent,
                    throttle_budget=config.throttle_budget)
        return cls(config=config, connection=connection, leadership=leadership, kube=kube, states={},
                   children=ChildCache(PRUNABLE + MONITORING_KINDS), discovery=Discovery(),
                   scheduler=SchedulerThread(), replicas=ReplicaCache(),
                   redis_executor=ThreadPoolExecutor(max_workers=REDIS_THREADS, thread_name_prefix="bookgen-redis"),
                   reconciles=collections.Counter())

    def state(self, uid: str) -> QueueState:
        """The queue's state, made on first use."""
        state = self.states.get(uid)
        if state is None:
            state = self.states[uid] = QueueState(retry_delay=self.config.secret_retry_seconds)
        return state

    def forget(self, uid: str) -> None:
        """Drop every per-queue item the operator keeps in memory, so deleted queues cost nothing."""
        self.states.pop(uid, None)
        self.reconciles.pop(uid, None)


@overload
def plain(value: Mapping[str, object]) -> JSON: ...


@overload
def plain(value: object) -> object: ...


def plain(value: object) -> object:
    """kopf bodies are mapping views; the core wants plain JSON-like data."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value
