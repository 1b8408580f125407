"""Managed children as the operator's watches last saw them: a reconcile reads them here, not with LISTs.

Every reconcile used to LIST five kinds of children by the queue's labels: with 250 BookGenQueues
reconciled every 30 s that was 38 LISTs a second, four fifths of the operator's API requests and a
quarter of its CPU (py-spy under bench.operator_scale). kopf already watches our children, selected by
the API server with our managed-by label (handlers.CHILD_RESOURCES); its events keep this cache, and a
reconcile takes a queue's children from it. Like an informer, the cache is re-listed too: a queue's
children are LISTed when it has none cached yet and at least every `resync` seconds, so a watch that
missed an event (or one that RBAC forbids) delays a repair by at most that long, never forever. Each
queue's period is shortened by a fixed fraction of up to `jitter` (from a hash of its name): queues
created together would otherwise all re-list in the same second, 250 of them at once in the bench.

Our own writes go in at once (write-through), so a reconcile right after one sees what it wrote. An
event older than what is cached (a lower resourceVersion: in practice etcd's revision, an integer)
never replaces it. Everything here runs on kopf's event loop; nothing awaits, so no lock is needed.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

INSTANCE_LABEL = "app.kubernetes.io/instance"
#: Re-list a queue's children at least this often (seconds), whatever the watches said.
RESYNC_SECONDS = 300.0

#: (namespace, apiVersion, kind, instance)
Bucket = tuple[str, str, str, str]
#: (namespace, apiVersion, kind, name)
ObjectKey = tuple[str, str, str, str]


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def _newer_or_same(new: Mapping[str, Any], old: Mapping[str, Any]) -> bool:
    try:
        return int(_meta(new).get("resourceVersion")) >= int(_meta(old).get("resourceVersion"))
    except (TypeError, ValueError):  # opaque versions: the later event wins
        return True


class ChildCache:
    def __init__(self, kinds: Iterable[tuple[str, str]], *, resync: float = RESYNC_SECONDS, jitter: float = 0.5,
                 clock: Callable[[], float] = time.monotonic) -> None:
        #: The (apiVersion, kind) pairs the watches cover; other kinds are always listed.
        self.kinds = frozenset(kinds)
        self.resync, self.jitter, self.clock = resync, jitter, clock
        self._buckets: dict[Bucket, dict[str, dict[str, Any]]] = {}
        self._where: dict[ObjectKey, str] = {}  # the instance an object was filed under
        self._due: dict[tuple[str, str], float] = {}  # (namespace, instance) -> when to list again

    def covers(self, api_version: str, kind: str) -> bool:
        return (api_version, kind) in self.kinds

    def seen(self, obj: Mapping[str, Any]) -> None:
        """From a watch event (ADDED, MODIFIED, the initial listing) or our own write: the object as stored."""
        meta = _meta(obj)
        api_version, kind = str(obj.get("apiVersion") or ""), str(obj.get("kind") or "")
        if not self.covers(api_version, kind) or not meta.get("name"):
            return
        key: ObjectKey = (str(meta.get("namespace") or ""), api_version, kind, str(meta["name"]))
        instance = str((meta.get("labels") or {}).get(INSTANCE_LABEL) or "")
        before = self._where.get(key)
        if before is not None:
            old = self._buckets.get((*key[:3], before), {}).get(key[3])
            if old is not None and not _newer_or_same(obj, old):
                return
            if before != instance:
                self._drop(key)
        self._buckets.setdefault((*key[:3], instance), {})[key[3]] = dict(obj)
        self._where[key] = instance

    def gone(self, namespace: str, api_version: str, kind: str, name: str) -> None:
        """From a DELETED event or our own delete."""
        self._drop((namespace, api_version, kind, name))

    def _drop(self, key: ObjectKey) -> None:
        instance = self._where.pop(key, None)
        if instance is not None:
            bucket = self._buckets.get((*key[:3], instance))
            if bucket is not None:
                bucket.pop(key[3], None)

    def due(self, namespace: str, instance: str) -> bool:
        """True when this queue's children must be listed (never listed, or not for `resync` seconds)."""
        at = self._due.get((namespace, instance))
        return at is None or self.clock() >= at

    def listed(self, namespace: str, instance: str, found: Mapping[tuple[str, str], list[dict[str, Any]]]) -> None:
        """A LIST of every covered kind for this queue: it replaces what was cached for it."""
        for (api_version, kind), items in found.items():
            if not self.covers(api_version, kind):
                continue
            for name in list(self._buckets.get((namespace, api_version, kind, instance), {})):
                self._drop((namespace, api_version, kind, name))
            for obj in items:
                self.seen({**obj, "apiVersion": api_version, "kind": kind})
        share = zlib.crc32(f"{namespace}/{instance}".encode()) / 2**32
        self._due[(namespace, instance)] = self.clock() + self.resync * (1 - self.jitter * share)

    def children(self, namespace: str, api_version: str, kind: str, instance: str) -> list[dict[str, Any]]:
        """The cached children of one kind of this queue (the reconcile's view: it must not change them)."""
        return list(self._buckets.get((namespace, api_version, kind, instance), {}).values())

    def clear(self) -> None:
        """Forget everything (a new operator run in the same process starts from LISTs)."""
        self._buckets.clear()
        self._where.clear()
        self._due.clear()

    def forget(self, namespace: str, instance: str) -> None:
        """The queue is gone: its next namesake starts with a LIST."""
        self._due.pop((namespace, instance), None)
