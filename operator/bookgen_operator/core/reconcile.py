"""Pure reconcile planning: desired children vs. what the API server holds -> a list of writes.

Level-based and idempotent: nothing here does I/O. `plan()` compares only the fields *we* set
(a desired manifest is a pattern the actual object must contain), so fields the API server fills
in (defaults such as `imagePullPolicy`, `terminationMessagePath`, `protocol: TCP`, a Service's
`clusterIP`, status, managed metadata) never count as drift, and an unchanged object yields no
write at all. Resource quantities are compared by value ("1000m" == "1", "1Gi" == "1024Mi"),
because the API server canonicalises them.

How the server stores an object is not always how we wrote it: it omits zero-valued `omitempty`
fields (a probe's `initialDelaySeconds: 0` comes back absent), canonicalises quantities, and
admission may rewrite values. Rather than hard-code the Go types' `omitempty` tags (a table that
would always be one field behind), we learn the stored form from the server: every create or patch
returns the stored object, and `learned_form()` projects it onto the fields we enforce (a field
the server dropped becomes `Omitted`). The next comparisons use that projection for as long as the
desired fields are unchanged (`fingerprint`). Cost: after an operator restart, a child whose stored
form differs from its manifest gets one PATCH (a no-op on the server) to learn it again; then no
write until something really changes. We chose this over server-side apply because a no-op apply
is still a write request (and the choice of "would this apply change anything?" needs the same
knowledge locally), while this needs only the answers the server already gives.

Two deliberate exceptions to "desired wins":
- `spec.replicas` of worker Deployments is owned by the autoscaler once the Deployment exists;
- immutable fields (selectors, StatefulSet volume claim templates and service name) are never
  patched: the API server would reject the whole patch, blocking every other repair.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Literal

from bookgen_operator.core.objects import JSON, Body
from bookgen_operator.core.removals import merged, removals

ObjectKey = tuple[str, str, str]  # (apiVersion, kind, name)

COMPONENT_LABEL = "app.kubernetes.io/component"
#: Paths (under the top level) never patched on an existing object, per kind.
IMMUTABLE: Mapping[str, tuple[tuple[str, ...], ...]] = MappingProxyType({
    "Deployment": (("spec", "selector"),),
    "StatefulSet": (("spec", "selector"), ("spec", "volumeClaimTemplates"), ("spec", "serviceName")),
    "PodDisruptionBudget": (),
    "Service": (("spec", "clusterIP"), ("spec", "clusterIPs")),
    # Immutable but for growing, which not every class allows: made once, then left alone.
    "PersistentVolumeClaim": (("spec",),),
})


@dataclass(frozen=True)
class Action:
    """One write: create `body`, merge-patch `body` into the existing object, or delete it (`body`
    then holds the `uid` the delete is conditioned on)."""

    verb: Literal["create", "patch", "delete"]
    api_version: str
    kind: str
    name: str
    body: JSON = field(compare=False)
    reason: str = ""

    def describe(self) -> str:
        return f"{self.verb} {self.kind}/{self.name}" + (f" ({self.reason})" if self.reason else "")


def key_of(obj: Body) -> ObjectKey:
    return (obj["apiVersion"], obj["kind"], obj["metadata"]["name"])


def owner_reference(owner: Body) -> JSON:
    meta = owner["metadata"]
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": meta["name"], "uid": meta["uid"],
            "controller": True, "blockOwnerDeletion": True}


#: A child made but never owned: no owner reference, so the garbage collector keeps it when the owner
#: goes (the exports claim: resources/exports.py), and prune() never deletes it either.
RETAIN_ANNOTATION = "bookgen.io/retain-on-delete"


def adopt(obj: Body, owner: Body) -> JSON:
    """A copy of `obj` in the owner's namespace with the owner as controller (GC on delete), unless it is
    marked to be retained."""
    adopted = copy.deepcopy(dict(obj))
    meta = adopted.setdefault("metadata", {})
    meta["namespace"] = owner["metadata"]["namespace"]
    if (meta.get("annotations") or {}).get(RETAIN_ANNOTATION) != "true":
        meta["ownerReferences"] = [owner_reference(owner)]
    return adopted


# ---------------------------------------------------------------- comparison

_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eE][+-]?[0-9]+|Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$")
_SUFFIX: Mapping[str | None, Decimal] = MappingProxyType({
    None: Decimal(1), "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "k": Decimal(10**3),
    "M": Decimal(10**6), "G": Decimal(10**9), "T": Decimal(10**12), "P": Decimal(10**15), "E": Decimal(10**18),
    "Ki": Decimal(2**10), "Mi": Decimal(2**20), "Gi": Decimal(2**30), "Ti": Decimal(2**40), "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
})


def quantity(value: object) -> Decimal | None:
    """A Kubernetes resource quantity as a number, or None if `value` is not one."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    match = _QUANTITY.match(str(value))
    if not match:
        return None
    number, suffix = match.groups()
    try:
        if suffix and suffix[0] in "eE":
            return Decimal(number + suffix)
        return Decimal(number) * _SUFFIX[suffix]
    except InvalidOperation:
        return None


def _scalar_equal(want: object, have: object) -> bool:
    if want == have and type(want) is type(have):
        return True
    if isinstance(want, str) or isinstance(have, str):
        a, b = quantity(want), quantity(have)
        return a is not None and a == b
    return bool(want == have)


@dataclass(frozen=True)
class Omitted:
    """A desired value the API server did not store (e.g. an omitempty zero): absent is as good as it."""

    value: object


#: What was learned about a child's stored form: (fingerprint of the enforced fields, their stored form).
Learned = tuple[str, object]


def fingerprint(enforced: Body) -> str:
    return hashlib.sha256(json.dumps(enforced, sort_keys=True, default=str).encode()).hexdigest()


def learned_form(stored: object, want: object) -> object:
    """`want` (the fields we enforce) as the server stored them: every leaf replaced by the stored
    value at its path, `Omitted(want)` where the server left the field out."""
    if stored is None:
        return Omitted(want)
    if isinstance(want, Mapping):
        if not isinstance(stored, Mapping):
            return copy.deepcopy(stored)
        return {k: learned_form(stored.get(k), v) for k, v in want.items()}
    if isinstance(want, list):
        if not isinstance(stored, list) or len(stored) != len(want):
            return copy.deepcopy(stored)  # admission changed the list itself: accept it as it is
        return [learned_form(s, w) for s, w in zip(stored, want, strict=True)]
    return copy.deepcopy(stored)


def learn(enforced: Body, stored: Body) -> Learned:
    """What to remember after a write of `enforced` answered with the object `stored`."""
    return fingerprint(enforced), learned_form(stored, enforced)


def contains(have: object, want: object) -> bool:
    """Does the actual value `have` contain everything the desired pattern `want` sets?"""
    if want is None:
        return True
    if isinstance(want, Omitted):
        return have is None or contains(have, want.value)
    if isinstance(want, Mapping):
        if not want:
            return have is None or isinstance(have, Mapping)
        if not isinstance(have, Mapping):
            return False
        return all(contains(have.get(k), v) for k, v in want.items())
    if isinstance(want, list):
        if have is None:
            return not want
        if not isinstance(have, list) or len(have) != len(want):
            return False
        return all(contains(h, w) for h, w in zip(have, want, strict=True))
    return _scalar_equal(want, have)


def _drop(obj: JSON, path: Sequence[str]) -> None:
    node: object = obj
    for part in path[:-1]:
        node = node.get(part) if isinstance(node, Mapping) else None
        if node is None:
            return
    if isinstance(node, dict):
        node.pop(path[-1], None)


def comparable(desired: Body, *, existing: bool, autoscaler_owns_replicas: bool = True) -> JSON:
    """The part of a desired manifest we enforce on an existing object."""
    body = copy.deepcopy(dict(desired))
    body.pop("status", None)
    meta = body.get("metadata", {})
    body["metadata"] = {k: meta[k] for k in ("labels", "annotations", "ownerReferences") if k in meta}
    if existing:
        for path in IMMUTABLE.get(body.get("kind", ""), ()):
            _drop(body, path)
        is_worker = body.get("kind") == "Deployment" and meta.get("labels", {}).get(COMPONENT_LABEL) == "worker"
        if is_worker and autoscaler_owns_replicas:
            _drop(body, ("spec", "replicas"))  # the autoscaler's field once the Deployment exists
    return body


def owned_by(obj: Body, owner_uid: str) -> bool:
    """Is `obj` controlled by the owner with this uid (not merely labelled like our children)?"""
    return any(ref.get("uid") == owner_uid and ref.get("controller")
               for ref in (obj.get("metadata") or {}).get("ownerReferences") or [])


def prune(
    desired: Sequence[Body], existing: Mapping[ObjectKey, Body], owner_uid: str
) -> list[Action]:
    """Deletes of children this owner controls that are no longer desired (a removed pool, Flower or
    beat turned off, Redis switched to external, monitoring set to never). `existing` holds what a
    list by our labels found; only objects whose controller reference carries `owner_uid` qualify,
    so a namesake created by someone else is never touched."""
    wanted = {key_of(obj) for obj in desired}
    return [Action("delete", key[0], key[1], key[2], {"uid": obj["metadata"]["uid"]}, "no longer desired")
            for key, obj in sorted(existing.items())
            if key not in wanted and owned_by(obj, owner_uid) and not obj["metadata"].get("deletionTimestamp")]


def plan(
    desired: Sequence[Body],
    actual: Mapping[ObjectKey, Body | None],
    *,
    autoscaler_owns_replicas: bool = True,
    learned: Mapping[ObjectKey, Learned] | None = None,
) -> list[Action]:
    """Writes that make `actual` contain `desired`; [] when nothing differs (no write at all).
    With autoscaling disabled, worker replicas are the spec's (minReplicas) and are enforced.
    `learned`: the stored form of children written before (see `learn`), used while still current."""
    actions: list[Action] = []
    for want in desired:
        key = key_of(want)
        have = actual.get(key)
        if have is None:
            actions.append(Action("create", key[0], key[1], key[2], copy.deepcopy(dict(want)), "missing"))
            continue
        enforced = comparable(want, existing=True, autoscaler_owns_replicas=autoscaler_owns_replicas)
        pattern: object = enforced
        known = (learned or {}).get(key)
        if known is not None and known[0] == fingerprint(enforced):
            pattern = known[1]
        # Something we set once and no longer do (an envFrom, a template field): containment cannot see
        # it, core/removals.py can.
        gone = removals(want, have)
        if gone or not contains(have, pattern):
            actions.append(Action("patch", key[0], key[1], key[2], merged(enforced, gone) if gone else enforced,
                                  "drifted"))
    return actions
