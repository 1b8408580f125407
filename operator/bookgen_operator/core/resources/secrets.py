"""Builders for the Secrets the kopf layer generates once (create-if-absent, so they stay stable).
They are not part of desired_objects: the values are random and must never be recomputed."""

from __future__ import annotations

import secrets as _random

from bookgen_operator.core.objects import JSON
from bookgen_operator.core.resources.labels import metadata
from bookgen_operator.core.spec import QueueSpec


def new_password(length: int = 32) -> str:
    return _random.token_urlsafe(length)


def build_redis_secret(spec: QueueSpec, password: str) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(spec, spec.redis_secret_name, "redis"),
        "type": "Opaque",
        "stringData": {spec.redis.password_secret_key: password},
    }


def build_flower_secret(spec: QueueSpec, username: str, password: str) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(spec, spec.flower_secret_name, "flower"),
        "type": "Opaque",
        "stringData": {"username": username, "password": password},
    }


def generated_secrets(spec: QueueSpec) -> list[JSON]:
    """The Secrets this spec needs the operator to create, with fresh random values."""
    out = []
    if spec.redis_secret_generated:
        out.append(build_redis_secret(spec, new_password()))
    if spec.flower_secret_generated:
        out.append(build_flower_secret(spec, "admin", new_password()))
    return out
