"""Every numeric bound of the BookGenQueue schema, and a BookGenQueue just outside each one (issue 24,
acceptance 4: the API server refuses a value just outside every bound the schema states).

Pure: reads the CRD, builds bodies, talks to nobody. tests/unit/test_crd_bounds.py runs the cases
through the local validator and the parser; tests/cluster/test_crd_bounds.py through a real API server.

    bounds() -> list[Bound]        # every minimum/maximum of the schema, in schema order
    cases() -> list[BoundCase]     # one per bound: the values just outside, the value at the bound

Values just outside a bound: min-1 / max+1 for an integer field. For a number field both a whole number
(the API server's check takes a different path for it: it compares a whole number with the bound truncated
to an integer, so `minimum: 0.1` alone lets 0 through) and the bound -/+ 0.01. For an exclusive bound, the
bound itself, written as a whole number and as a fraction.

The rest of each body is the smallest valid BookGenQueue around the field: a pool, a spread constraint or a
generator of the right type where the path needs one, and the companion fields the cross-field rules need
for the value at the bound to be valid (pollIntervalSeconds 300 needs a longer scale-down window...). Where
no valid object has the field at its bound (a rule makes the effective bound tighter), `refused_at_bound_by`
names the rule that refuses it.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from tests.support.crd_validation import openapi_schema

Number = int | float
Side = Literal["minimum", "maximum"]

#: Array items the bodies create where a bound's path goes through an array (keyed by the array's
#: name and `[]`): a valid item without the field. A map's value is created as entry `key`.
ITEMS: Mapping[str, Mapping[str, Any]] = {
    "pools[]": {"name": "all", "queues": ["content_generation", "monitoring"]},
    "topologySpreadConstraints[]": {
        "maxSkew": 1,
        "topologyKey": "kubernetes.io/hostname",
        "whenUnsatisfiable": "DoNotSchedule",  # minDomains needs it
    },
}
#: Objects that need fields of their own to be valid (a generator's type names its settings' block).
OBJECTS: Mapping[str, Mapping[str, Any]] = {
    "openai": {"baseUrl": "http://llm.example:8000/v1", "model": "m"},
}

#: Fields the cross-field rules need beside a bound's field, so that the value at the bound is valid
#: (they are in the bodies outside the bound too: only the field differs).
COMPANIONS: Mapping[str, Mapping[str, Number]] = {
    # scaleDownWindowSeconds >= pollIntervalSeconds < staleAfterSeconds, per pool after its overrides.
    "spec.autoscaling.pollIntervalSeconds": {
        "spec.autoscaling.scaleDownWindowSeconds": 86400,
        "spec.autoscaling.staleAfterSeconds": 86400,
    },
    "spec.pools[].autoscaling.pollIntervalSeconds": {
        "spec.pools[].autoscaling.scaleDownWindowSeconds": 86400,
        "spec.pools[].autoscaling.staleAfterSeconds": 86400,
    },
    # A queue-wide window of 0 is valid when every pool overrides it.
    "spec.autoscaling.scaleDownWindowSeconds": {"spec.pools[].autoscaling.scaleDownWindowSeconds": 30},
    "spec.autoscaling.staleAfterSeconds": {"spec.autoscaling.pollIntervalSeconds": 0.1},
    "spec.pools[].autoscaling.staleAfterSeconds": {"spec.pools[].autoscaling.pollIntervalSeconds": 0.1},
    "spec.pools[].minReplicas": {"spec.pools[].maxReplicas": 100},
    "spec.worker.timeLimitSeconds": {"spec.worker.visibilityTimeoutSeconds": 604800},
}

_SOFT = "worker.timeLimitSeconds must be greater than softTimeLimitSeconds"
#: Bounds no valid object reaches: the rule (a part of its message) that refuses the value at the bound.
UNREACHABLE: Mapping[tuple[str, Side], str] = {
    ("spec.worker.softTimeLimitSeconds", "maximum"): _SOFT,  # timeLimitSeconds would have to exceed its own maximum
    ("spec.worker.timeLimitSeconds", "minimum"): _SOFT,  # softTimeLimitSeconds would have to be below its minimum
    ("spec.worker.visibilityTimeoutSeconds", "minimum"): "worker.visibilityTimeoutSeconds must exceed timeLimitSeconds",
    # A pool's effective window must be at least its pollIntervalSeconds, which is at least 0.1.
    ("spec.pools[].autoscaling.scaleDownWindowSeconds", "minimum"):
        "autoscaling.scaleDownWindowSeconds must be at least pollIntervalSeconds",
}

#: How far beyond a bound the fractional values lie.
FRACTION = 0.01


@dataclass(frozen=True)
class Bound:
    """One `minimum` or `maximum` of the schema; `path` in schema form (spec.pools[].concurrency)."""

    path: str
    side: Side
    limit: Number
    exclusive: bool
    type: Literal["integer", "number"]

    def __str__(self) -> str:
        op = {("minimum", False): ">=", ("minimum", True): ">", ("maximum", False): "<=", ("maximum", True): "<"}
        return f"{self.path}{op[self.side, self.exclusive]}{show(self.limit)}"


@dataclass(frozen=True)
class BoundCase:
    bound: Bound
    #: The field's place in the bodies, with indices: spec.pools[0].concurrency.
    field: str
    #: Values the API server must refuse.
    outside: tuple[Number, ...]
    #: The value at the bound (for an exclusive bound, just inside it), which it must accept...
    at_bound: Number
    #: ... unless a cross-field rule refuses every value there: then a part of that rule's message.
    refused_at_bound_by: str = ""
    companions: Mapping[str, Number] = dataclasses.field(default_factory=dict)

    @property
    def id(self) -> str:
        return str(self.bound)

    def body(self, value: Number) -> dict[str, Any]:
        """The smallest valid BookGenQueue with the companions, and the field set to `value`."""
        body: dict[str, Any] = {"apiVersion": "bookgen.io/v1alpha1", "kind": "BookGenQueue",
                                "metadata": {"name": "bounds"}, "spec": {}}
        for path, companion in self.companions.items():
            put(body, path, companion)
        put(body, self.bound.path, value)
        return body


def show(value: Number) -> str:
    """A bound as written: 1000000, 0.1."""
    return str(value) if isinstance(value, int) else repr(value)


def _segments(path: str) -> list[str]:
    """spec.pools[].autoscaling.maxStep -> ['spec', 'pools', '[]', 'autoscaling', 'maxStep']."""
    return re.findall(r"\[\]|\{\}|[^.\[\]{}]+", path)


def put(body: dict[str, Any], path: str, value: Number) -> None:
    """Set the field at schema path `path` in `body`, creating what leads to it: the first item of an
    array (ITEMS), an entry `key` of a map, objects with what they need to be valid (OBJECTS; a
    generator's type is the settings' block the path goes through)."""
    parts = _segments(path)
    node: Any = body
    for i, part in enumerate(parts[:-1]):
        nxt = parts[i + 1]
        if nxt in ("[]", "{}"):
            container: Any = node.setdefault(part, [] if nxt == "[]" else {})
            key = f"{part}{nxt}"
            if nxt == "[]":
                if key not in ITEMS:
                    raise ValueError(f"{path}: no valid item for {key} in crd_bounds.ITEMS")
                if not container:
                    container.append(copy.deepcopy(dict(ITEMS[key])))
                node = container[0]
            else:
                node = container.setdefault("key", {})
            continue
        if part in ("[]", "{}"):
            continue
        seed = dict(OBJECTS.get(part, {}))
        if part == "generator":
            seed["type"] = nxt
        node = node.setdefault(part, copy.deepcopy(seed))
    node[parts[-1]] = value


def concrete(path: str) -> str:
    """The schema path with the indices and keys the bodies use: spec.pools[0].concurrency."""
    return path.replace("[]", "[0]").replace("{}", ".key")


def bounds(schema: Mapping[str, Any] | None = None) -> list[Bound]:
    """Every numeric bound of the schema, spec and status alike; nothing below an object that keeps
    unknown fields (its contents are not the schema's)."""
    found: list[Bound] = []

    def walk(node: Mapping[str, Any], path: str) -> None:
        if node.get("x-kubernetes-preserve-unknown-fields") and not node.get("properties"):
            return
        sides: tuple[tuple[Side, str], ...] = (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum"))
        for side, flag in sides:
            if side in node:
                kind = node.get("type")
                if kind not in ("integer", "number"):
                    raise ValueError(f"{path}: a {side} on a {kind} field")
                found.append(Bound(path, side, node[side], node.get(flag) is True, kind))
        for key, sub in node.get("properties", {}).items():
            walk(sub, f"{path}.{key}" if path else key)
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{path}[]")
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"], f"{path}{{}}")

    walk(openapi_schema() if schema is None else schema, "")
    return found


def _beyond(bound: Bound) -> tuple[Number, ...]:
    step = -1 if bound.side == "minimum" else 1
    limit = bound.limit
    if bound.exclusive:
        # The bound itself: as a whole number where it is one, and as a fraction.
        whole = (int(limit),) if float(limit).is_integer() else ()
        return (*whole, float(limit)) if bound.type == "number" else (int(limit),)
    if bound.type == "integer":
        return (int(limit) + step,)
    # The nearest whole number outside (0 for minimum 0.1), then the bound -/+ a fraction.
    nearest = math.floor(limit) if step < 0 else math.ceil(limit)
    if nearest == limit:
        nearest += step
    return (int(nearest), round(limit + step * FRACTION, 6))


def _at(bound: Bound) -> Number:
    if not bound.exclusive:
        return bound.limit
    inward = 1 if bound.side == "minimum" else -1
    return bound.limit + inward * (1 if bound.type == "integer" else 0.5)


def cases(schema: Mapping[str, Any] | None = None) -> list[BoundCase]:
    """One case per bound of bounds(), in the same order."""
    out = []
    for bound in bounds(schema):
        if not bound.path.startswith("spec."):
            # A create drops the status (it is a subresource): such a bound needs a status write to test.
            raise ValueError(f"{bound}: only spec bounds can be tested with a created object")
        out.append(BoundCase(
            bound=bound,
            field=concrete(bound.path),
            outside=_beyond(bound),
            at_bound=_at(bound),
            refused_at_bound_by=UNREACHABLE.get((bound.path, bound.side), ""),
            companions=COMPANIONS.get(bound.path, {}),
        ))
    return out
