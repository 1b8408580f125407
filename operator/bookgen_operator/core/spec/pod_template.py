"""A pod template a user gives a queue's pods, in cert-manager's `podTemplate` shape:
`metadata.labels`, `metadata.annotations` and the pod spec fields that place a pod and give it an
identity (`POD_FIELDS`): nodeSelector, tolerations, affinity, topologySpreadConstraints,
priorityClassName, serviceAccountName, automountServiceAccountToken. Queue-wide (`spec.podTemplate`,
every BookGen pod), per pool, for beat, Flower and Redis (docs/operator.md says which wins).

Everything else of the pod stays the operator's, because our guarantees rest on it: the security
contexts (Pod Security "restricted"), probes, command, grace period, shareProcessNamespace, our
selector labels and the pod-deletion-cost annotation the autoscaler sets. The schema offers none of
them; labels and annotations of ours are refused here with a one-line message.

Affinity and the label selectors are checked field by field against the Kubernetes types (`_SHAPES`):
the CRD keeps them open (their full schema would triple its size), and the API server drops an unknown
field of a Deployment with a mere warning, so a typo would otherwise vanish silently.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from bookgen_operator.core.objects import JSON
from bookgen_operator.core.spec.model import SpecError
from bookgen_operator.core.spec.pod_model import PodTemplate
from bookgen_operator.core.spec.reader import Reader, is_dns_label, show

POD_FIELDS = ("nodeSelector", "tolerations", "affinity", "topologySpreadConstraints", "priorityClassName",
              "serviceAccountName", "automountServiceAccountToken")
#: Label prefixes/keys that are the operator's: they select the pods (Services, PDBs, the autoscaler).
OUR_LABEL_PREFIX = "app.kubernetes.io/"
POOL_LABEL = "bookgen.io/pool"
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
LABELS_MESSAGE = ("podTemplate labels must not set app.kubernetes.io/* or bookgen.io/pool: "
                  "the operator's labels select the pods")
ANNOTATIONS_MESSAGE = ("podTemplate annotations must not set controller.kubernetes.io/pod-deletion-cost: "
                       "the autoscaler sets it on busy workers")
EXISTS_MESSAGE = "a toleration with operator Exists takes no value"
KEYLESS_MESSAGE = "a toleration without a key must have operator Exists"
SECONDS_MESSAGE = "tolerationSeconds needs effect NoExecute"
MIN_DOMAINS_MESSAGE = "minDomains needs whenUnsatisfiable DoNotSchedule"
SPREAD_TWICE_MESSAGE = "topologySpreadConstraints must not repeat a topologyKey with the same whenUnsatisfiable"
MAX_TOLERATIONS = 32
MAX_SPREAD = 8

# The Kubernetes types inside affinity and label selectors: field -> its shape. A shape is a type name
# of this table, "str", "int", "strs" (a list of strings) or "map" (strings to strings); (shape,) is a list.
_REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"
_PREFERRED = "preferredDuringSchedulingIgnoredDuringExecution"
_SHAPES: Mapping[str, Mapping[str, object]] = MappingProxyType({
    "Affinity": MappingProxyType({"nodeAffinity": "NodeAffinity", "podAffinity": "PodAffinity",
                                  "podAntiAffinity": "PodAffinity"}),
    "NodeAffinity": MappingProxyType({_REQUIRED: "NodeSelector", _PREFERRED: ("PreferredSchedulingTerm",)}),
    "NodeSelector": MappingProxyType({"nodeSelectorTerms": ("NodeSelectorTerm",)}),
    "NodeSelectorTerm": MappingProxyType({"matchExpressions": ("Requirement",), "matchFields": ("Requirement",)}),
    "Requirement": MappingProxyType({"key": "str", "operator": "str", "values": "strs"}),
    "PreferredSchedulingTerm": MappingProxyType({"weight": "int", "preference": "NodeSelectorTerm"}),
    "PodAffinity": MappingProxyType({_REQUIRED: ("PodAffinityTerm",), _PREFERRED: ("WeightedPodAffinityTerm",)}),
    "PodAffinityTerm": MappingProxyType({"labelSelector": "LabelSelector", "namespaceSelector": "LabelSelector",
                                         "namespaces": "strs", "topologyKey": "str", "matchLabelKeys": "strs",
                                         "mismatchLabelKeys": "strs"}),
    "WeightedPodAffinityTerm": MappingProxyType({"weight": "int", "podAffinityTerm": "PodAffinityTerm"}),
    "LabelSelector": MappingProxyType({"matchLabels": "map", "matchExpressions": ("Requirement",)}),
})


def read_pod_template(r: Reader) -> PodTemplate:
    """`podTemplate` of the object `r` reads (the spec, a pool, beat, Flower or Redis)."""
    t = r.obj("podTemplate", ("metadata", "spec"))
    meta = t.obj("metadata", ("labels", "annotations"))
    labels = _labels(meta.value.get("labels"), meta.at("labels"))
    annotations = _annotations(meta.value.get("annotations"), meta.at("annotations"))
    s = t.obj("spec", POD_FIELDS)
    spec: JSON = {}
    if s.has("nodeSelector"):
        spec["nodeSelector"] = _label_map(s.value["nodeSelector"], s.at("nodeSelector"))
    if s.has("tolerations"):
        spec["tolerations"] = _tolerations(s.value["tolerations"], s.at("tolerations"))
    if s.has("affinity"):
        spec["affinity"] = _shaped(s.value["affinity"], "Affinity", s.at("affinity"))
    if s.has("topologySpreadConstraints"):
        spec["topologySpreadConstraints"] = _spread(s.value["topologySpreadConstraints"],
                                                    s.at("topologySpreadConstraints"))
    for key in ("priorityClassName", "serviceAccountName"):
        if s.has(key):
            name = s.string(key, "", min_len=1)
            if not all(is_dns_label(part) for part in name.split(".")):
                raise SpecError(f"{s.at(key)} must be a lower-case DNS name (got {show(name)})")
            spec[key] = name
    if s.has("automountServiceAccountToken"):
        spec["automountServiceAccountToken"] = s.boolean("automountServiceAccountToken", False)
    return PodTemplate(labels, annotations, spec)


def _label_map(raw: object, path: str) -> dict[str, str]:
    from bookgen_operator.core.spec.parse import label_map  # parse imports this module: import at use

    return label_map(raw, path)


def _labels(raw: object, path: str) -> dict[str, str]:
    labels = _label_map(raw, path)
    for key in labels:
        if key.startswith(OUR_LABEL_PREFIX) or key == POOL_LABEL:
            raise SpecError(f"{path}: {LABELS_MESSAGE} (got {key})")
    return labels


def _annotations(raw: object, path: str) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping) or not all(isinstance(v, str) for v in raw.values()):
        raise SpecError(f"{path} must be a map of annotation names to string values (got {show(raw)})")
    _label_map(dict.fromkeys(raw, ""), path)  # annotation names follow the label names' syntax
    if DELETION_COST in raw:
        raise SpecError(f"{path}: {ANNOTATIONS_MESSAGE}")
    return {str(k): str(v) for k, v in raw.items()}


def _list(raw: object, path: str, limit: int) -> list[object]:
    if not isinstance(raw, list | tuple):
        raise SpecError(f"{path} must be a list (got {show(raw)})")
    if len(raw) > limit:
        raise SpecError(f"{path} must have at most {limit} entries (got {len(raw)})")
    return list(raw)


def _tolerations(raw: object, path: str) -> list[JSON]:
    out: list[JSON] = []
    for i, item in enumerate(_list(raw, path, MAX_TOLERATIONS)):
        r = Reader(item, f"{path}[{i}]", ("key", "operator", "value", "effect", "tolerationSeconds"))
        toleration: JSON = {}
        if r.has("key"):
            toleration["key"] = r.string("key", "", max_len=316)
        operator = r.choice("operator", "Equal", ("Equal", "Exists"))
        if r.has("operator"):
            toleration["operator"] = operator
        if r.has("value"):
            toleration["value"] = r.string("value", "", max_len=63)
        if r.has("effect"):
            toleration["effect"] = r.choice("effect", "", ("", "NoSchedule", "PreferNoSchedule", "NoExecute"))
        if r.has("tolerationSeconds"):
            toleration["tolerationSeconds"] = r.integer("tolerationSeconds", 0, -(2**63))
        if operator == "Exists" and toleration.get("value"):
            raise SpecError(f"{r.path}: {EXISTS_MESSAGE}")
        if not toleration.get("key") and operator != "Exists":
            raise SpecError(f"{r.path}: {KEYLESS_MESSAGE}")
        if "tolerationSeconds" in toleration and toleration.get("effect") != "NoExecute":
            raise SpecError(f"{r.path}: {SECONDS_MESSAGE}")
        out.append(toleration)
    return out


def _spread(raw: object, path: str) -> list[JSON]:
    out: list[JSON] = []
    known = ("maxSkew", "topologyKey", "whenUnsatisfiable", "labelSelector", "minDomains", "nodeAffinityPolicy",
             "nodeTaintsPolicy", "matchLabelKeys")
    for i, item in enumerate(_list(raw, path, MAX_SPREAD)):
        r = Reader(item, f"{path}[{i}]", known)
        for required in ("maxSkew", "topologyKey", "whenUnsatisfiable"):
            if not r.has(required):
                raise SpecError(f"{r.path}: {required} is required")
        c: JSON = {"maxSkew": r.integer("maxSkew", 1, 1),
                   "topologyKey": r.string("topologyKey", "", min_len=1, max_len=316),
                   "whenUnsatisfiable": r.choice("whenUnsatisfiable", "DoNotSchedule",
                                                 ("DoNotSchedule", "ScheduleAnyway"))}
        if r.has("labelSelector"):
            c["labelSelector"] = _shaped(r.value["labelSelector"], "LabelSelector", r.at("labelSelector"))
        if r.has("minDomains"):
            c["minDomains"] = r.integer("minDomains", 1, 1)
            if c["whenUnsatisfiable"] != "DoNotSchedule":
                raise SpecError(f"{r.path}: {MIN_DOMAINS_MESSAGE}")
        for key in ("nodeAffinityPolicy", "nodeTaintsPolicy"):
            if r.has(key):
                c[key] = r.choice(key, "Honor", ("Honor", "Ignore"))
        if r.has("matchLabelKeys"):
            c["matchLabelKeys"] = list(r.string_list("matchLabelKeys", (), max_items=16))
        if any((o["topologyKey"], o["whenUnsatisfiable"]) == (c["topologyKey"], c["whenUnsatisfiable"]) for o in out):
            raise SpecError(f"{r.path}: {SPREAD_TWICE_MESSAGE}")
        out.append(c)
    return out


def _shaped(raw: object, shape: object, path: str) -> object:
    """`raw` checked against one of _SHAPES (or a leaf), returned as plain data."""
    if isinstance(shape, tuple):
        return [_shaped(item, shape[0], f"{path}[{i}]") for i, item in enumerate(_list(raw, path, 64))]
    if shape == "str":
        if not isinstance(raw, str):
            raise SpecError(f"{path} must be a string (got {show(raw)})")
        return raw
    if shape == "int":
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise SpecError(f"{path} must be a whole number (got {show(raw)})")
        return raw
    if shape == "strs":
        if not isinstance(raw, list | tuple) or not all(isinstance(v, str) for v in raw):
            raise SpecError(f"{path} must be a list of strings (got {show(raw)})")
        return list(raw)
    if shape == "map":
        if not isinstance(raw, Mapping) or not all(isinstance(v, str) for v in raw.values()):
            raise SpecError(f"{path} must be a map of strings (got {show(raw)})")
        return {str(k): v for k, v in raw.items()}
    fields = _SHAPES[str(shape)]
    r = Reader(raw, path, tuple(fields))
    return {str(k): _shaped(v, fields[str(k)], r.at(str(k))) for k, v in r.value.items()}
