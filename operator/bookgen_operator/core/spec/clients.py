"""`spec.redis.allowedClients`: the user's own pods (the producers of tasks, a dashboard, a job that
reads results) that the Redis NetworkPolicy admits beside the queue's pods and the operator.

Each entry is a NetworkPolicyPeer without ipBlock, written as Kubernetes writes it: a podSelector
alone means pods of the queue's namespace, a namespaceSelector alone every pod of the namespaces it
selects, both together the selected pods of the selected namespaces. Missing or empty: nobody more
is admitted. The selectors are checked like the API server checks a LabelSelector (label names and
values, the operators and their values), so a bad one is refused here, with the field's path, before
it becomes a NetworkPolicy the API server would refuse.

What comes out is the peer as the API server stores it: empty matchLabels/matchExpressions and empty
`values` are left out (they are `omitempty`), so the built policy equals the stored one and a settled
queue writes nothing.
"""

from __future__ import annotations

from bookgen_operator.core.objects import JSON
from bookgen_operator.core.spec.model import SpecError
from bookgen_operator.core.spec.reader import Reader, show

MAX_CLIENTS = 16
MAX_EXPRESSIONS = 16
MAX_VALUES = 64
SELECTORS = ("podSelector", "namespaceSelector")
OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
#: The CRD's CEL messages, contained in the parser's (tests/crd/invalid holds both sides to them).
NO_SELECTOR = "an allowed client names a podSelector, a namespaceSelector or both"
VALUES_RULE = "operators In and NotIn need values; Exists and DoesNotExist take none"
EXTERNAL = "redis.allowedClients admits clients to the managed Redis; an external Redis's network is not the operator's"


def read_allowed_clients(redis: Reader, managed: bool) -> tuple[JSON, ...]:
    """The peers of `allowedClients` of the `spec.redis` object `redis` reads."""
    raw = redis.value.get("allowedClients")
    path = redis.at("allowedClients")
    if raw is None:
        return ()
    if not isinstance(raw, list | tuple):
        raise SpecError(f"{path} must be a list of {{podSelector, namespaceSelector}} (got {show(raw)})")
    if len(raw) > MAX_CLIENTS:
        raise SpecError(f"{path} must have at most {MAX_CLIENTS} entries (got {len(raw)})")
    if raw and not managed:
        raise SpecError(f"spec.redis: {EXTERNAL}")
    peers = []
    for i, item in enumerate(raw):
        r = Reader(item, f"{path}[{i}]", SELECTORS)
        given = [key for key in SELECTORS if r.has(key)]
        if not given:
            raise SpecError(f"{r.path}: {NO_SELECTOR}")
        peers.append({key: _selector(r.obj(key, ("matchLabels", "matchExpressions"))) for key in given})
    return tuple(peers)


def _selector(r: Reader) -> JSON:
    """A LabelSelector; `{}` (select everything in scope) stays `{}`."""
    from bookgen_operator.core.spec.parse import label_map  # parse imports this module

    out: JSON = {}
    labels = label_map(r.value.get("matchLabels"), r.at("matchLabels"))
    if labels:
        out["matchLabels"] = labels
    expressions = _expressions(r.value.get("matchExpressions"), r.at("matchExpressions"))
    if expressions:
        out["matchExpressions"] = expressions
    return out


def _expressions(raw: object, path: str) -> list[JSON]:
    from bookgen_operator.core.spec.parse import label_map

    if raw is None:
        return []
    if not isinstance(raw, list | tuple):
        raise SpecError(f"{path} must be a list of {{key, operator, values}} (got {show(raw)})")
    if len(raw) > MAX_EXPRESSIONS:
        raise SpecError(f"{path} must have at most {MAX_EXPRESSIONS} entries (got {len(raw)})")
    out = []
    for i, item in enumerate(raw):
        r = Reader(item, f"{path}[{i}]", ("key", "operator", "values"))
        for required in ("key", "operator"):
            if not r.has(required):
                raise SpecError(f"{r.path}: {required} is required")
        key = r.string("key", "", min_len=1, max_len=317)
        label_map({key: ""}, r.at("key"))  # the same rule as a matchLabels key
        operator = r.choice("operator", "In", OPERATORS)
        values = _values(r.value.get("values", []), r.at("values"))
        if (operator in ("In", "NotIn")) != bool(values):
            raise SpecError(f"{r.path} ({key} {operator}): {VALUES_RULE}")
        out.append({"key": key, "operator": operator, **({"values": values} if values else {})})
    return out


def _values(raw: object, path: str) -> list[str]:
    from bookgen_operator.core.spec.parse import label_map

    if not isinstance(raw, list | tuple) or not all(isinstance(v, str) for v in raw):
        raise SpecError(f"{path} must be a list of label values (got {show(raw)})")
    if len(raw) > MAX_VALUES:
        raise SpecError(f"{path} must have at most {MAX_VALUES} entries (got {len(raw)})")
    for value in raw:
        try:
            label_map({"k": value}, path)
        except SpecError:
            raise SpecError(f"{path}: {show(value)} is not a valid label value") from None
    return list(raw)
