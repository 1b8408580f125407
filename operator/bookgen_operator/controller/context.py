"""The operator process's shared state: one API client, per-queue bookkeeping and the child cache.

The kopf handler modules (handlers, autoscaler_daemon) are glue over these; keeping them here lets
each handler module import them without importing another handler module.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from bookgen_operator.controller.child_cache import ChildCache
from bookgen_operator.controller.children import MONITORING_KINDS, PRUNABLE
from bookgen_operator.controller.client import Kube
from bookgen_operator.controller.leader import LEADERSHIP
from bookgen_operator.core.status import Condition

SECRET_RETRY_SECONDS = max(30.0, float(os.environ.get("BOOKGEN_SECRET_RETRY_SECONDS", "30")))


@dataclasses.dataclass
class _Connection:
    info: Any = None


CONNECTION = _Connection()
#: Every write checks leadership (leader.py): a replica that lost its Lease never writes again.
KUBE = Kube(lambda: CONNECTION.info, may_write=LEADERSHIP.leading)


@dataclasses.dataclass
class QueueState:
    """In-memory per-queue bookkeeping (lost on restart, which only costs one extra reconcile)."""

    lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)
    dirty: bool = False
    #: The trigger that made the running reconcile dirty (the strongest, if several).
    dirty_trigger: str | None = None
    invalid_generation: int | None = None
    retry_at: float = 0.0
    retry_delay: float = SECRET_RETRY_SECONDS
    autoscaling: Condition | None = None
    warned_generation: int | None = None
    #: The stored form of children we wrote (reconcile.learn): compare the way the server stores them.
    learned: dict[tuple, Any] = dataclasses.field(default_factory=dict)
    #: (generation, when) the queue's Secrets were last found complete: a timer reconcile re-reads them
    #: only every RESYNC_SECONDS (one GET per queue every 30 s was a sixth of the operator's requests).
    secrets_checked: tuple[int | None, float] | None = None


STATES: dict[str, QueueState] = {}
#: The children as kopf's watches see them.
CHILDREN = ChildCache(PRUNABLE + MONITORING_KINDS)


def plain(value: Any) -> Any:
    """kopf bodies are mapping views; the core wants plain JSON-like data."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value
