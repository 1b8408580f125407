"""What we set once and set no longer, and how to take it away.

The planner compares by containment (reconcile.contains: the stored object must contain what we set)
and writes JSON merge patches, so a field we stop setting is neither seen as drift nor removed: an
`envFrom`, a toleration, a nodeSelector entry or a label dropped from the spec would stay on the pods
for ever. Two cases, two remedies:

- A container is wholly ours (a patch replaces the `containers` list whole), so an `envFrom` the
  desired container lacks and the stored one has is simply drift (`_dropped_env_from`).
- Pod template fields are shared: admission and policy engines add nodeSelector entries and
  tolerations to Deployments, `kubectl rollout restart` adds an annotation; comparing them exactly
  would fight those writers for ever. So a templated workload carries the annotation
  `bookgen.io/pod-template` (on the Deployment or StatefulSet itself, not its pods: it rolls
  nothing): the label, annotation and nodeSelector keys the template set, and a digest of each other
  pod spec field it set (those it owns whole, as a pod's own field). The stored record against the
  desired one gives the merge-patch nulls for what the template no longer sets and, for a field whose
  value changed and is a map (affinity), for the keys of the stored value the new one lacks. Only what
  we recorded is ever removed; a settled workload (the same record) yields nothing.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from bookgen_operator.core.objects import JSON, Body
from bookgen_operator.core.spec.pod_model import PodTemplate

RECORD_ANNOTATION = "bookgen.io/pod-template"
_WORKLOADS = ("Deployment", "StatefulSet")
#: Maps shared key by key with other writers: the metadata's, and nodeSelector in the pod spec.
_KEYED = ("labels", "annotations", "nodeSelector")
#: A pod spec field with a deprecated alias the API server fills in from it (and reads it back from).
_ALIASES = MappingProxyType({"serviceAccountName": "serviceAccount"})


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:12]


def record(template: PodTemplate) -> str:
    """The annotation's value for a workload with this (merged) template."""
    node_selector = template.spec.get("nodeSelector")
    return json.dumps({"labels": sorted(template.labels), "annotations": sorted(template.annotations),
                       "nodeSelector": sorted(node_selector) if isinstance(node_selector, Mapping) else [],
                       "spec": {k: _digest(v) for k, v in sorted(template.spec.items()) if k != "nodeSelector"}},
                      sort_keys=True, separators=(",", ":"))


def _recorded(obj: Body) -> dict[str, Any] | None:
    raw = ((obj.get("metadata") or {}).get("annotations") or {}).get(RECORD_ANNOTATION)
    if not isinstance(raw, str):
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None  # hand-edited: the comparison repairs the annotation; nothing known to remove
    if not isinstance(value, dict):
        return None
    return {**{part: list(value.get(part) or []) for part in _KEYED}, "spec": dict(value.get("spec") or {})}


def _stale(have: object, want: object) -> JSON:
    """Merge-patch nulls for the keys of `have` that `want` lacks, at every depth of nested maps."""
    if not isinstance(have, Mapping) or not isinstance(want, Mapping):
        return {}
    out: JSON = {k: None for k in have if k not in want}
    for key in have.keys() & want.keys():
        inner = _stale(have[key], want[key])
        if inner:
            out[key] = inner
    return out


def _dropped_env_from(pod_want: Body, pod_have: Body) -> bool:
    have = (pod_have.get("spec") or {}).get("containers") or []
    want = (pod_want.get("spec") or {}).get("containers") or []
    return any("envFrom" in h and "envFrom" not in w for h, w in zip(have, want, strict=False))


def removals(want: Body, have: Body) -> JSON:
    """A merge patch removing from `have` what we set once and `want` no longer sets; {} when there is
    nothing to remove. Mostly nulls; for a dropped envFrom, the desired containers (a merge patch
    replaces the list whole)."""
    if want.get("kind") not in _WORKLOADS:
        return {}
    pod_want = want["spec"]["template"]
    pod_have = (have.get("spec") or {}).get("template") or {}
    patch = _template_removals(want, have, pod_want, pod_have)
    if _dropped_env_from(pod_want, pod_have):
        patch = merged(patch, {"spec": {"template": {"spec": {"containers": pod_want["spec"]["containers"]}}}})
    return patch


def _template_removals(want: Body, have: Body, pod_want: Body, pod_have: Body) -> JSON:
    old = _recorded(have)
    new = _recorded(want) or {**{part: [] for part in _KEYED}, "spec": {}}
    if old is None or old == new:
        return {}
    spec_want, spec_have = pod_want.get("spec") or {}, pod_have.get("spec") or {}
    meta: JSON = {}
    for part in ("labels", "annotations"):
        ours = (pod_want.get("metadata") or {}).get(part) or {}
        gone = {k: None for k in old[part] if k not in new[part] and k not in ours}
        if gone:
            meta[part] = gone
    spec: JSON = {}
    gone = {k: None for k in old["nodeSelector"] if k not in (spec_want.get("nodeSelector") or {})}
    if gone:
        spec["nodeSelector"] = gone
    for name, digest in old["spec"].items():
        if name not in spec_want:  # neither the template nor the operator sets it now
            spec[name] = None
            if name in _ALIASES:
                spec[_ALIASES[name]] = None
        elif new["spec"].get(name) != digest:  # changed: a merge patch keeps the keys it does not name
            stale = _stale(spec_have.get(name), spec_want[name])
            if stale:
                spec[name] = stale
    template: JSON = {}
    if meta:
        template["metadata"] = meta
    if spec:
        template["spec"] = spec
    patch: JSON = {"spec": {"template": template}} if template else {}
    if _recorded(want) is None:
        patch["metadata"] = {"annotations": {RECORD_ANNOTATION: None}}
    return patch


def merged(body: Body, extra: Body) -> JSON:
    """`body` with `extra` merged in, map by map (a patch of what we set plus the nulls of `removals`)."""
    out = copy.deepcopy(dict(body))
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def without_nulls(body: Body) -> JSON:
    """`body` less the nulls `merged` added (and the maps that held only those): the fields we
    enforce, to learn their stored form."""
    out: JSON = {}
    for key, value in body.items():
        if isinstance(value, Mapping):
            inner = without_nulls(value)
            if value and not inner:
                continue
            value = inner
        if value is not None:
            out[key] = value
    return out
