"""Validate custom resources the way the API server would: structural defaults, the OpenAPI schema
(jsonschema) and every x-kubernetes-validations rule (cel-python).

What the API server does and we mimic, in order: prune `null`s of non-nullable fields, apply the
schema's defaults (recursively, also inside defaults just applied), validate against the schema,
then evaluate the CEL rules bottom-up wherever the object has a value. Numbers are typed by the
schema (a `number` field is a CEL double even when written as `1`), as the API server does.
Rules that use `oldSelf` are transition rules: skipped on create, evaluated by validate_update.

    validate_object(body) -> list[str]     # a whole BookGenQueue; [] = accepted
    validate_update(old, new) -> list[str] # an update, with the transition rules
    validate_status(status) -> list[str]   # a status (or status patch) against the status schema
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import yaml
from celpy import celtypes

CRD_PATH = Path(__file__).resolve().parents[2] / "crds" / "bookgenqueue.yaml"


@cache
def load_crd(path: Path = CRD_PATH) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def openapi_schema(crd: Mapping[str, Any] | None = None) -> dict[str, Any]:
    crd = load_crd() if crd is None else crd
    (version,) = [v for v in crd["spec"]["versions"] if v.get("storage")]
    return version["schema"]["openAPIV3Schema"]


# ---------------------------------------------------------------- OpenAPI v3.0 -> JSON Schema


def to_json_schema(node: Any) -> Any:
    """OpenAPI v3.0 (Kubernetes flavour) to JSON Schema 2020-12: boolean exclusive bounds become
    numeric ones, `nullable` widens the type, int-or-string drops its `type`."""
    if isinstance(node, list):
        return [to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key in ("default", "nullable", "description", "format"):
            continue
        if key in ("properties", "patternProperties"):
            out[key] = {k: to_json_schema(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties", "not") or key in ("anyOf", "allOf", "oneOf"):
            out[key] = to_json_schema(value)
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):
            continue
        else:
            out[key] = value
    if node.get("exclusiveMinimum") is True and "minimum" in node:
        out["exclusiveMinimum"] = out.pop("minimum")
    if node.get("exclusiveMaximum") is True and "maximum" in node:
        out["exclusiveMaximum"] = out.pop("maximum")
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if node.get("format") == "date-time":
        out["pattern"] = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$"
    return out


# ---------------------------------------------------------------- defaulting and pruning


def prune_nulls(value: Any, schema: Mapping[str, Any]) -> Any:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            sub = _child_schema(schema, k)
            if v is None and not sub.get("nullable"):
                continue
            out[k] = prune_nulls(v, sub)
        return out
    if isinstance(value, list):
        return [prune_nulls(v, schema.get("items", {})) for v in value]
    return value


def apply_defaults(value: Any, schema: Mapping[str, Any]) -> Any:
    """The API server's structural defaulting: a missing property with a default gets a copy of it,
    then defaulting continues inside (so `default: {}` lets the children's defaults apply)."""
    if isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
        for key, child in value.items():
            apply_defaults(child, _child_schema(schema, key))
    elif isinstance(value, list):
        for item in value:
            apply_defaults(item, schema.get("items", {}))
    return value


def _child_schema(schema: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    props = schema.get("properties", {})
    if key in props:
        return props[key]
    extra = schema.get("additionalProperties")
    return extra if isinstance(extra, dict) else {}


# ---------------------------------------------------------------- CEL


@cache
def _program(rule: str) -> celpy.Runner:
    env = celpy.Environment()
    return env.program(env.compile(rule))


def to_cel(value: Any, schema: Mapping[str, Any]) -> Any:
    """A JSON value as a CEL value typed by its schema (number -> double, integer -> int)."""
    kind = schema.get("type")
    if schema.get("x-kubernetes-preserve-unknown-fields") and not schema.get("properties"):
        return celpy.json_to_cel(value)
    if isinstance(value, dict):
        return celtypes.MapType({celtypes.StringType(k): to_cel(v, _child_schema(schema, k)) for k, v in value.items()})
    if isinstance(value, list):
        return celtypes.ListType([to_cel(v, schema.get("items", {})) for v in value])
    if isinstance(value, bool):
        return celtypes.BoolType(value)
    if kind == "number" and isinstance(value, int | float):
        return celtypes.DoubleType(float(value))
    return celpy.json_to_cel(value)


def cel_messages(value: Any, schema: Mapping[str, Any], path: str = "", old: Any = None) -> list[str]:
    """Evaluate every rule where the object has a value; children first, as the API server reports them.

    `old` is the previous version at the same place (updates only): transition rules (`oldSelf`) run
    only where it exists. Like the API server, only object properties correlate (not list items)."""
    messages: list[str] = []
    if isinstance(value, dict):
        for key, child in value.items():
            sub = _child_schema(schema, key)
            if sub:
                old_child = old.get(key) if isinstance(old, dict) else None
                messages += cel_messages(child, sub, f"{path}.{key}" if path else key, old_child)
    elif isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            messages += cel_messages(item, schema["items"], f"{path}[{index}]")
    rules = schema.get("x-kubernetes-validations", [])
    if rules:
        activation = {"self": to_cel(value, schema)}
        if old is not None:
            activation["oldSelf"] = to_cel(old, schema)
        for rule in rules:
            expr = rule["rule"]
            if re.search(r"\boldSelf\b", expr) and old is None:
                continue  # a transition rule: only runs on update
            where = path or "<root>"
            try:
                result = _program(expr).evaluate(activation)
            except celpy.CELEvalError as exc:
                messages.append(f"{where}: rule {expr!r} could not be evaluated: {exc.args[0]}")
                continue
            if isinstance(result, celpy.CELEvalError):
                messages.append(f"{where}: rule {expr!r} could not be evaluated: {result.args[0]}")
            elif not bool(result):
                messages.append(f"{where}: {rule.get('message') or 'failed rule: ' + expr}")
    return messages


# ---------------------------------------------------------------- entry points


def schema_messages(value: Any, schema: Mapping[str, Any]) -> list[str]:
    validator = jsonschema.Draft202012Validator(to_json_schema(schema))
    messages = []
    for error in sorted(validator.iter_errors(value), key=lambda e: list(map(str, e.absolute_path))):
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path).lstrip(".")
        messages.append(f"{where or '<root>'}: {error.message}")
    return messages


def defaulted(body: Mapping[str, Any]) -> dict[str, Any]:
    """The object as the API server would store it: nulls pruned, defaults applied."""
    schema = openapi_schema()
    return apply_defaults(prune_nulls(copy.deepcopy(dict(body)), schema), schema)


def validate_object(body: Mapping[str, Any]) -> list[str]:
    """Messages for everything the API server would reject in this BookGenQueue; [] when accepted."""
    schema = openapi_schema()
    obj = defaulted(body)
    return schema_messages(obj, schema) + cel_messages(obj, schema)


def validate_update(old_body: Mapping[str, Any], new_body: Mapping[str, Any]) -> list[str]:
    """Messages for an update from `old_body` to `new_body`, transition rules (`oldSelf`) included."""
    schema = openapi_schema()
    new, old = defaulted(new_body), defaulted(old_body)
    return schema_messages(new, schema) + cel_messages(new, schema, "", old)


def validate_status(status: Mapping[str, Any]) -> list[str]:
    """Check a status (or a merge patch of it: `null` means delete) against the declared status
    schema. Unknown fields are reported, because the API server would silently prune them."""
    schema = openapi_schema()["properties"]["status"]
    value = prune_nulls(copy.deepcopy(dict(status)), schema)
    strict = _no_unknown_fields(schema)
    return [f"status.{m}" for m in schema_messages(value, strict)] + cel_messages(value, schema, "status")


def _no_unknown_fields(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the schema where objects with `properties` refuse other keys (pruning made visible)."""
    out = dict(schema)
    if "properties" in out and not out.get("x-kubernetes-preserve-unknown-fields"):
        out["properties"] = {k: _no_unknown_fields(v) for k, v in out["properties"].items()}
        out.setdefault("additionalProperties", False)
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = _no_unknown_fields(out["additionalProperties"])
    if isinstance(out.get("items"), dict):
        out["items"] = _no_unknown_fields(out["items"])
    return out
