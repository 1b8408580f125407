"""Environment a user gives BookGen's processes: `env` and `envFrom`, queue-wide (`spec.env`, every
worker, beat and Flower) and per pool (`spec.pools[].env`, that pool's workers), as Kubernetes takes
them in a container. The usual way to configure a worker (`BOOKGEN_GENERATOR`, the model's URL, an
API key from a Secret, a proxy) without baking anything into an image.

Checked here, with the field's path in every message: the shape Kubernetes accepts, unique names, and
no name the operator sets itself (`RESERVED`): those carry our guarantees (Redis URL and password,
heartbeat file, time limits) and would otherwise be overridden silently. `envFrom` keys cannot be
checked (they live in the Secret); Kubernetes lets an explicit `env` entry win over them, so ours do.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from types import MappingProxyType

from bookgen_operator.core.objects import JSON
from bookgen_operator.core.spec.model import Environment, SpecError
from bookgen_operator.core.spec.reader import Reader, is_dns_label, show

#: What Kubernetes accepts as an environment variable's name.
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
MAX_ENV = 64
#: Names the operator sets in BookGen's containers (tests/unit checks every builder against this list).
RESERVED = frozenset({
    "REDIS_URL", "REDIS_PASSWORD", "REDIS_HOST", "REDIS_PORT", "REDIS_DB",
    "BOOKGEN_SOFT_TIME_LIMIT", "BOOKGEN_TIME_LIMIT", "BOOKGEN_VISIBILITY_TIMEOUT", "BOOKGEN_PREFETCH_MULTIPLIER",
    "BOOKGEN_MAX_TASKS_PER_CHILD", "BOOKGEN_POOL", "BOOKGEN_HEARTBEAT_FILE", "BOOKGEN_OUTPUT_DIR",
    "BOOKGEN_METRICS_PORT", "BOOKGEN_FLOWER_MAX_TASKS", "FLOWER_USER", "FLOWER_PASSWORD", "FLOWER_BASIC_AUTH",
    "POD_NAME", "POD_NAMESPACE", "HOME", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE",
    # spec.exports.s3 (resources/exports.py)
    "BOOKGEN_EXPORTS", "BOOKGEN_S3_BUCKET", "BOOKGEN_S3_ENDPOINT", "BOOKGEN_S3_PREFIX", "BOOKGEN_S3_REGION",
    "BOOKGEN_S3_ADDRESSING", "BOOKGEN_S3_VERIFY_TLS", "BOOKGEN_S3_CREDENTIALS_DIR",
})  # fmt: skip
_KEY_REF = ("name", "key", "optional")
_SOURCES: Mapping[str, Sequence[str]] = MappingProxyType({
    "secretKeyRef": _KEY_REF,
    "configMapKeyRef": _KEY_REF,
    "fieldRef": ("apiVersion", "fieldPath"),
    "resourceFieldRef": ("containerName", "resource", "divisor"),
})


def read_environment(r: Reader) -> Environment:
    """`env` and `envFrom` of the object `r` reads (the spec, or a pool)."""
    return Environment(_env(r.value.get("env"), r.at("env")), _env_from(r.value.get("envFrom"), r.at("envFrom")))


def _items(raw: object, path: str) -> list[object]:
    if raw is None:
        return []
    if not isinstance(raw, list | tuple):
        raise SpecError(f"{path} must be a list (got {show(raw)})")
    if len(raw) > MAX_ENV:
        raise SpecError(f"{path} must have at most {MAX_ENV} entries (got {len(raw)})")
    return list(raw)


def _env(raw: object, path: str) -> tuple[JSON, ...]:
    out: list[JSON] = []
    for i, item in enumerate(_items(raw, path)):
        at = f"{path}[{i}]"
        r = Reader(item, at, ("name", "value", "valueFrom"))
        name = r.string("name", "", min_len=1)
        if not _ENV_NAME.match(name):
            raise SpecError(f"{r.at('name')} must be letters, digits, '_', '-' or '.', not starting with a digit "
                            f"(got {show(name)})")
        if name in RESERVED:
            raise SpecError(f"{r.at('name')}: {name} is set by the operator itself and cannot be overridden")
        if any(e["name"] == name for e in out):
            raise SpecError(f"{r.at('name')}: an environment variable is listed twice ({name})")
        entry: JSON = {"name": name}
        if r.has("value") and r.has("valueFrom"):
            raise SpecError(f"{at} ({name}): give value or valueFrom, not both")
        if r.has("value"):
            entry["value"] = r.string("value", "", max_len=32768)
        elif r.has("valueFrom"):
            entry["valueFrom"] = _value_from(r.obj("valueFrom", tuple(_SOURCES)), name)
        else:
            entry["value"] = ""
        out.append(entry)
    return tuple(out)


def _value_from(r: Reader, name: str) -> JSON:
    given = [k for k in _SOURCES if r.has(k)]
    if len(given) != 1:
        raise SpecError(f"{r.path} ({name}): valueFrom names exactly one of {', '.join(_SOURCES)}")
    kind = given[0]
    source = r.obj(kind, _SOURCES[kind])
    out: JSON = {}
    if kind in ("secretKeyRef", "configMapKeyRef"):
        out["name"] = _object_name(source, "name")
        out["key"] = source.string("key", "", min_len=1)
        if source.has("optional"):
            out["optional"] = source.boolean("optional", False)
    elif kind == "fieldRef":
        out["fieldPath"] = source.string("fieldPath", "", min_len=1)
        if source.has("apiVersion"):
            out["apiVersion"] = source.string("apiVersion", "v1")
    else:
        out["resource"] = source.string("resource", "", min_len=1)
        for key in ("containerName", "divisor"):
            if source.has(key):
                out[key] = str(source.value[key])
    return {kind: out}


def _env_from(raw: object, path: str) -> tuple[JSON, ...]:
    out: list[JSON] = []
    for i, item in enumerate(_items(raw, path)):
        r = Reader(item, f"{path}[{i}]", ("prefix", "configMapRef", "secretRef"))
        refs = [k for k in ("configMapRef", "secretRef") if r.has(k)]
        if len(refs) != 1:
            raise SpecError(f"{r.path}: an envFrom entry names exactly one of secretRef, configMapRef")
        ref = r.obj(refs[0], ("name", "optional"))
        entry: JSON = {refs[0]: {"name": _object_name(ref, "name")}}
        if ref.has("optional"):
            entry[refs[0]]["optional"] = ref.boolean("optional", False)
        if r.has("prefix"):
            entry["prefix"] = r.string("prefix", "", max_len=253)
        out.append(entry)
    return tuple(out)


def _object_name(r: Reader, key: str) -> str:
    name = r.string(key, "", min_len=1)
    if not all(is_dns_label(part) for part in name.split(".")):
        raise SpecError(f"{r.at(key)} must be the name of a Secret or ConfigMap (got {show(name)})")
    return name
