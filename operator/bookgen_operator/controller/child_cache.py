"""Managed children as the operator's watches last saw them: a reconcile reads them here, not with LISTs.

Every reconcile used to LIST five kinds of children by the queue's labels: with 250 BookGenQueues
reconciled every 30 s that was 38 LISTs a second, four fifths of the operator's API requests and a
quarter of its CPU (py-spy under bench.operator_scale). kopf already watches our children, selected by
the API server with our managed-by label (handlers.SERVER_SELECTED); its events keep this cache, and a
reconcile takes a queue's children from it. Like an informer, the cache is re-listed too: a queue's
children are LISTed when it has none cached yet and at least every `resync` seconds, so a watch that
missed an event (or one that RBAC forbids) delays a repair by at most that long, never forever. Each
queue's period is shortened by a fixed fraction of up to `jitter` (from a hash of its name): queues
created together would otherwise all re-list in the same second, 250 of them at once in the bench.

Our own writes go in at once (write-through), so a reconcile right after one sees what it wrote. An
event older than what is cached (a lower resourceVersion: in practice etcd's revision, an integer)
never replaces it, and neither does a LIST: a watch event can arrive while a LIST is in flight, and
a LIST that replaced the bucket wholesale put the older object back. Under bench.operator_scale one
queue stayed "export 0/1" for minutes that way (its Deployment's ready status arrived during the
queue's first LIST, and no further event came until the next resync). So a listed item replaces a
cached one only if it is not older, and a cached object the LIST lacks is dropped only if it is no
newer than the LIST's own resourceVersion (an object made after the snapshot is not gone). The
reverse race, a DELETED event during the LIST, leaves a tombstone with the deletion's version: an
older listing of that object is not taken back in (it would hide the missing child from repair).
Everything here runs on kopf's event loop; nothing awaits, so no lock is needed.

Each object is kept as compact JSON bytes without `metadata.managedFields` (as client-go's informers
can drop it with TransformStripManagedFields: nothing here reads it), and decoded when a reconcile
asks. A Deployment as stored is 62 KiB of Python objects (28 KiB without managedFields), 5 KiB as
bytes: 250 queues' children were some 80 MiB of parsed dicts (an estimate from per-object figures),
every container of which each full collection of the garbage collector walked (bytes are not
tracked). Decoding is cheap beside that: a reconcile reads a queue's dozen children every 30 s.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple

from bookgen_operator.core.objects import JSON, Body

INSTANCE_LABEL = "app.kubernetes.io/instance"
#: Re-list a queue's children at least this often (seconds), whatever the watches said.
RESYNC_SECONDS = 300.0

#: (namespace, apiVersion, kind, instance)
Bucket = tuple[str, str, str, str]
#: (namespace, apiVersion, kind, name)
ObjectKey = tuple[str, str, str, str]


def _meta(obj: Body) -> Body:
    return obj.get("metadata") or {}


def _version(obj: Body) -> int | None:
    """resourceVersion as an integer (etcd's revision), or None when absent or opaque."""
    return _as_version(_meta(obj).get("resourceVersion"))


def _as_version(value: object) -> int | None:
    if value is None:
        return None
    try:
        return int(str(value))
    except ValueError:
        return None


def _newer_or_same(a: int | None, b: int | None) -> bool:
    return a is None or b is None or a >= b  # opaque versions: the later news wins


def _newer_than(a: int | None, b: int | None) -> bool:
    return a is None or b is None or a > b


class _Stored(NamedTuple):
    """One cached object: its resourceVersion, and the object as compact JSON without managedFields. A
    tuple of an int and bytes: the collector stops tracking it after its first pass (nothing to walk)."""

    version: int | None
    raw: bytes

    @classmethod
    def of(cls, obj: Body) -> _Stored:
        meta = {k: v for k, v in _meta(obj).items() if k != "managedFields"}
        return cls(_version(obj), json.dumps({**obj, "metadata": meta}, separators=(",", ":")).encode())

    def decoded(self) -> JSON:
        value: JSON = json.loads(self.raw)
        return value


class ChildCache:
    def __init__(self, kinds: Iterable[tuple[str, str]], *, resync: float = RESYNC_SECONDS, jitter: float = 0.5,
                 clock: Callable[[], float] = time.monotonic) -> None:
        #: The (apiVersion, kind) pairs the watches cover; other kinds are always listed.
        self.kinds = frozenset(kinds)
        self.resync, self.jitter, self.clock = resync, jitter, clock
        self._buckets: dict[Bucket, dict[str, _Stored]] = {}
        self._where: dict[ObjectKey, str] = {}  # the instance an object was filed under
        self._due: dict[tuple[str, str], float] = {}  # (namespace, instance) -> when to list again
        self._tombstones: dict[ObjectKey, int | None] = {}  # deleted: the deletion's version

    def covers(self, api_version: str, kind: str) -> bool:
        return (api_version, kind) in self.kinds

    def seen(self, obj: Body) -> None:
        """From a watch event (ADDED, MODIFIED, the initial listing) or our own write: the object as stored."""
        meta = _meta(obj)
        api_version, kind = str(obj.get("apiVersion") or ""), str(obj.get("kind") or "")
        if not self.covers(api_version, kind) or not meta.get("name"):
            return
        key: ObjectKey = (str(meta.get("namespace") or ""), api_version, kind, str(meta["name"]))
        instance = str((meta.get("labels") or {}).get(INSTANCE_LABEL) or "")
        version = _version(obj)
        if key in self._tombstones:
            if not _newer_than(version, self._tombstones[key]):
                return
            del self._tombstones[key]
        before = self._where.get(key)
        if before is not None:
            old = self._buckets.get((*key[:3], before), {}).get(key[3])
            if old is not None and not _newer_or_same(version, old.version):
                return
            if before != instance:
                self._drop(key)
        self._buckets.setdefault((*key[:3], instance), {})[key[3]] = _Stored.of(obj)
        self._where[key] = instance

    def gone(self, namespace: str, api_version: str, kind: str, name: str, resource_version: str | None = None) -> None:
        """From a DELETED event (with the deletion's resourceVersion) or our own delete."""
        key = (namespace, api_version, kind, name)
        self._drop(key)
        if resource_version is not None:
            self._tombstones[key] = _as_version(resource_version)

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

    def listed(self, namespace: str, instance: str, found: Mapping[tuple[str, str], list[JSON]],
               versions: Mapping[tuple[str, str], str | None] | None = None) -> None:
        """A LIST of every covered kind for this queue, each read at `versions[kind]` (the list's
        resourceVersion, if known): what it lacks is gone unless cached from after that snapshot."""
        for (api_version, kind), items in found.items():
            if not self.covers(api_version, kind):
                continue
            snapshot = _as_version((versions or {}).get((api_version, kind)))
            listed_names = {str(_meta(obj).get("name")) for obj in items}
            for name, cached in list(self._buckets.get((namespace, api_version, kind, instance), {}).items()):
                if name not in listed_names and _newer_or_same(snapshot, cached.version):
                    self._drop((namespace, api_version, kind, name))
            for obj in items:
                self.seen({**obj, "apiVersion": api_version, "kind": kind})
            # A tombstone older than this snapshot has done its work: the LIST did not have the object.
            for key in [k for k, t in self._tombstones.items() if k[:3] == (namespace, api_version, kind)
                        and k[3] not in listed_names and _newer_than(snapshot, t)]:
                del self._tombstones[key]
        share = zlib.crc32(f"{namespace}/{instance}".encode()) / 2**32
        self._due[(namespace, instance)] = self.clock() + self.resync * (1 - self.jitter * share)

    def children(self, namespace: str, api_version: str, kind: str, instance: str) -> list[JSON]:
        """The cached children of one kind of this queue (decoded afresh: the caller's to change)."""
        return [stored.decoded() for stored in self._buckets.get((namespace, api_version, kind, instance), {}).values()]

    def clear(self) -> None:
        """Forget everything (a new operator run in the same process starts from LISTs)."""
        self._buckets.clear()
        self._where.clear()
        self._due.clear()
        self._tombstones.clear()

    def forget(self, namespace: str, instance: str) -> None:
        """The queue is gone: its next namesake starts with a LIST."""
        self._due.pop((namespace, instance), None)
