"""The managed Redis's memory: maxmemory from the container's limit (or spec.redis.maxmemory), and
noeviction always, so a full queue refuses new work instead of dropping queued tasks."""

from __future__ import annotations

from typing import Any

import pytest
from bookgen_operator.core.resources.redis import build_redis_statefulset
from bookgen_operator.core.resources.redis_memory import maxmemory_bytes, memory_args
from bookgen_operator.core.spec import SpecError, parse_queue

from tests.support.crd_validation import validate_object

MiB = 2**20


def redis_args(redis: dict[str, Any]) -> list[str]:
    spec = parse_queue({"metadata": {"name": "bq", "namespace": "books"}, "spec": {"redis": redis}})
    (container,) = build_redis_statefulset(spec)["spec"]["template"]["spec"]["containers"]
    return list(container["args"])


def flag(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


@pytest.mark.parametrize(("limit", "expected"), [
    ("256Mi", 256 * MiB * 8 // 10),          # the default limit: 204.8 MiB
    ("1Gi", 2**30 * 8 // 10),
    ("512M", 512 * 10**6 * 8 // 10),         # decimal suffixes are decimal
    ("0.5Gi", 2**29 * 8 // 10),
    ("268435456", 268435456 * 8 // 10),      # plain bytes
])
def test_maxmemory_is_four_fifths_of_the_memory_limit(limit: str, expected: int) -> None:
    args = redis_args({"resources": {"limits": {"memory": limit}}})
    assert flag(args, "--maxmemory") == str(expected)
    assert flag(args, "--maxmemory-policy") == "noeviction"


def test_the_default_spec_gets_maxmemory_below_its_256Mi_limit() -> None:
    args = redis_args({})
    assert int(flag(args, "--maxmemory") or 0) == 214748364 < 256 * MiB


def test_without_a_memory_limit_redis_gets_no_maxmemory_but_still_never_evicts() -> None:
    args = redis_args({"resources": {"limits": {"cpu": "1"}}})
    assert "--maxmemory" not in args
    assert flag(args, "--maxmemory-policy") == "noeviction"
    assert memory_args({}) == ["--maxmemory-policy", "noeviction"]


def test_an_explicit_maxmemory_wins_over_the_limit() -> None:
    args = redis_args({"maxmemory": "100Mi", "resources": {"limits": {"memory": "1Gi"}}})
    assert flag(args, "--maxmemory") == str(100 * MiB)
    assert maxmemory_bytes({}, "64Mi") == 64 * MiB  # also without any limit (the local runtime's case)
    assert maxmemory_bytes({}) is None


@pytest.mark.parametrize(("redis", "message"), [
    ({"maxmemory": "256Mi"}, "must be below resources.limits.memory (256Mi)"),
    ({"maxmemory": "1Gi", "resources": {"limits": {"memory": "512Mi"}}}, "must be below resources.limits.memory"),
    ({"maxmemory": "512k"}, "must be at least 1Mi"),
    ({"maxmemory": "100m"}, "must be a size such as 200Mi"),
    ({"maxmemory": "lots"}, "must be a size such as 200Mi"),
    ({"mode": "external", "url": "redis://r:6379/0", "passwordSecretRef": {"name": "s"}, "maxmemory": "1Gi"},
     "an external Redis's configuration is not the operator's"),
])
def test_a_maxmemory_that_cannot_work_is_refused_in_one_line(redis: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=r"spec\.redis\.maxmemory") as refused:
        parse_queue({"metadata": {"name": "bq"}, "spec": {"redis": redis}})
    assert message in str(refused.value) and "\n" not in str(refused.value)


def test_the_crd_checks_the_same_shape() -> None:
    def body(redis: dict[str, Any]) -> dict[str, Any]:
        return {"apiVersion": "bookgen.io/v1alpha1", "kind": "BookGenQueue",
                "metadata": {"name": "bq", "namespace": "books"}, "spec": {"redis": redis}}

    assert validate_object(body({"maxmemory": "200Mi"})) == []
    assert any("maxmemory" in m for m in validate_object(body({"maxmemory": "200mb"})))
    external = {"mode": "external", "url": "redis://r:6379/0", "passwordSecretRef": {"name": "s"}, "maxmemory": "1Gi"}
    assert any("redis.maxmemory sizes the managed Redis" in m for m in validate_object(body(external)))
