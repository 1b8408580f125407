"""parse_queue: the CRD's defaults and rules in Python, with the same messages (so `bookgen up` and the
operator reject exactly what the API server rejects)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from bookgen_operator.cli.spec_file import load_queue_file
from bookgen_operator.core.autoscaler.policy import Policy
from bookgen_operator.core.spec import SpecError, parse_queue
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.crd_validation import defaulted, validate_object
from tests.unit.test_crd_schema import EXAMPLES, INVALID, invalid_case

ROOT = Path(__file__).resolve().parents[2]


def body(spec: dict[str, Any] | None = None, name: str = "bq") -> dict[str, Any]:
    return {"apiVersion": "bookgen.io/v1alpha1", "kind": "BookGenQueue", "metadata": {"name": name}, "spec": spec}


def test_empty_spec_is_the_original_topology() -> None:
    q = parse_queue(body({}))
    assert q.queues == ("high_priority", "content_generation", "validation", "export", "monitoring", "default")
    assert [(p.name, p.queues, p.concurrency) for p in q.pools] == [
        ("content", ("content_generation", "high_priority"), 2),
        ("validation", ("validation",), 2),
        ("export", ("export",), 1),
        ("monitoring", ("monitoring",), 1),
    ]
    assert q.beat.enabled and q.flower.enabled and q.redis.managed and q.redis.persistence.enabled
    assert q.redis_secret_name == "bq-redis" and q.redis_secret_generated
    assert q.flower_secret_name == "bq-flower-auth" and q.flower_secret_generated
    assert q.image.ref == "ghcr.io/bookgen/bookgen-queue:0.1.0"
    assert q.namespace == "default"


def test_missing_spec_behaves_like_empty_spec() -> None:
    assert parse_queue(body(None)) == parse_queue(body({}))


def test_pools_default_to_the_policy_the_simulator_measures() -> None:
    """bench/simulate.py runs Policy's defaults; a spec that sets nothing must get exactly those."""
    for raw in (body({}), defaulted(body({}))):
        for pool in parse_queue(raw).pools:
            measured = Policy(min_replicas=pool.min_replicas, max_replicas=pool.max_replicas)
            assert pool.policy == measured, pool.name


def test_zero_turns_the_oldest_age_guard_off() -> None:
    spec = {"autoscaling": {"targetOldestAgeSeconds": 0},
            "pools": [{"name": "content", "queues": ["content_generation"],
                       "autoscaling": {"targetOldestAgeSeconds": 45}},
                      {"name": "monitoring", "queues": ["monitoring"]}]}
    for raw in (body(spec), defaulted(body(spec))):
        assert [p.policy.target_oldest_age for p in parse_queue(raw).pools] == [45.0, None]
    assert parse_queue(body({})).pools[0].policy.target_oldest_age == 120.0
    only_zero = {"autoscaling": {"targetOldestAgeSeconds": 0}}
    assert {p.policy.target_oldest_age for p in parse_queue(body(only_zero)).pools} == {None}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_our_defaults_equal_the_api_servers(path: Path) -> None:
    """Parsing the raw example and the example as the API server stores it (CRD defaults applied)
    gives the same QueueSpec: the Python defaults and the CRD's say the same."""
    raw = yaml.safe_load(path.read_text())
    assert parse_queue(raw) == parse_queue(defaulted(raw))


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_resources_are_rejected_with_the_same_message(path: Path) -> None:
    raw, expected = invalid_case(path)
    with pytest.raises(SpecError) as err:
        parse_queue(raw)
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_full_example_maps_every_field() -> None:
    q = load_queue_file(ROOT / "examples" / "bookgenqueue-full.yaml")
    content = q.pool("content")
    assert content.pool_type == "threads" and content.concurrency == 4
    assert content.resources == {
        "requests": {"cpu": "500m", "memory": "512Mi"},
        "limits": {"cpu": "2", "memory": "2Gi"},
    }
    assert (content.min_replicas, content.max_replicas) == (0, 20)
    p = content.policy
    assert (p.min_replicas, p.max_replicas, p.target_per_slot, p.target_oldest_age) == (0, 20, 2.0, 120.0)
    assert (p.scale_up_window, p.scale_down_window, p.max_step, p.activation_threshold) == (5.0, 300.0, 4, 3)
    assert (p.tolerance, p.fallback_replicas, p.stale_after, p.poll_interval) == (0.2, 2, 60.0, 2.0)
    # a pool without overrides inherits spec.autoscaling
    v = q.pool("validation").policy
    assert (v.target_oldest_age, v.max_step, v.fallback_replicas, v.max_replicas) == (600.0, 10, 1, 5)
    assert q.pool("export").pool_type == "solo"
    assert q.redis.password_secret_name == "bookgen-full-redis-password" and not q.redis_secret_generated
    assert q.redis.password_secret_key == "redis-password"
    assert (q.redis.persistence.size, q.redis.persistence.storage_class) == ("5Gi", "fast-ssd")
    assert q.flower_secret_name == "bookgen-full-flower-login" and q.flower.max_tasks == 5000
    assert (q.worker.soft_time_limit, q.worker.time_limit, q.worker.visibility_timeout) == (1500, 1800, 3600)
    assert q.worker.max_tasks_per_child == 200
    assert (q.metrics.service_monitor, q.metrics.prometheus_rule) == ("always", "never")
    assert q.autoscaling.source == "prometheus" and q.autoscaling.prometheus_url.startswith("http://")
    assert q.image.pull_policy == "Always"


def test_external_redis_example() -> None:
    q = load_queue_file(ROOT / "examples" / "bookgenqueue-external-redis.yaml")
    assert not q.redis.managed and q.redis.url == "rediss://redis.example.internal:6380/0"
    assert q.redis_secret_name == "bookgen-redis-credentials" and not q.redis_secret_generated


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({"pool": []}, "spec: unknown field(s) pool"),
        (
            {"pools": [{"name": "m", "queues": ["monitoring"], "replicas": 2}]},
            "spec.pools[0]: unknown field(s) replicas",
        ),
        ({"pools": [{"name": "m", "queues": ["monitoring"], "concurrency": "2"}]}, "must be a whole number"),
        ({"pools": [{"queues": ["monitoring"]}]}, "spec.pools[0]: name is required"),
        ({"pools": [{"name": "Big", "queues": ["monitoring"]}]}, "spec.pools[0].name"),
        ({"pools": []}, "spec.pools must be a list of 1 to 16 pools"),
        ({"redis": "yes"}, "spec.redis must be an object"),
        ({"redis": {"persistence": {"size": "lots"}}}, "spec.redis.persistence.size"),
        ({"pools": [{"name": "m", "queues": ["monitoring"], "resources": {"limits": {"cpu": "two"}}}]}, "quantity"),
        ({"autoscaling": {"tolerance": 2}}, "spec.autoscaling.tolerance must be at least 0 and at most 1"),
        ({"autoscaling": {"targetPerSlot": 0}}, "spec.autoscaling.targetPerSlot must be above 0"),
        ({"metrics": {"serviceMonitor": {"enabled": True}}}, "must be one of auto, always, never"),
    ],
)
def test_user_mistakes_get_one_line_messages(spec: dict[str, Any], fragment: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_queue(body(spec))
    assert fragment in str(err.value)


def test_metadata_and_kind_are_checked() -> None:
    with pytest.raises(SpecError, match=r"metadata\.name is required"):
        parse_queue({"spec": {}})
    with pytest.raises(SpecError, match="expected kind BookGenQueue"):
        parse_queue({**body({}), "kind": "Deployment"})


def test_load_queue_file_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read"):
        load_queue_file(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("spec: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML at line"):
        load_queue_file(bad)
    other = tmp_path / "other.yaml"
    other.write_text("kind: ConfigMap\nmetadata: {name: x}\n")
    with pytest.raises(SpecError, match="holds no BookGenQueue"):
        load_queue_file(other)


def test_generation_and_uid_are_carried() -> None:
    raw = body({})
    raw["metadata"].update(uid="u-1", generation=7, namespace="books")
    q = parse_queue(raw)
    assert (q.uid, q.generation, q.namespace) == ("u-1", 7, "books")


# -- agreement on random specs: the CRD (schema + CEL) accepts exactly what parse_queue accepts --------

pool_strategy = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["a", "b", "content"]),
        "queues": st.lists(
            st.sampled_from(["monitoring", "export", "content_generation", "other"]), min_size=1, max_size=3
        ),
    },
    optional={
        "concurrency": st.integers(0, 5),
        "poolType": st.sampled_from(["prefork", "threads", "solo"]),
        "minReplicas": st.integers(0, 4),
        "maxReplicas": st.integers(1, 4),
        "autoscaling": st.fixed_dictionaries(
            {},
            optional={
                "pollIntervalSeconds": st.sampled_from([0.5, 1, 5, 30]),
                "scaleDownWindowSeconds": st.sampled_from([0, 1, 10, 60]),
                "staleAfterSeconds": st.sampled_from([1, 5, 30]),
            },
        ),
    },
)
spec_strategy = st.fixed_dictionaries(
    {},
    optional={
        "queues": st.lists(
            st.sampled_from(["monitoring", "export", "content_generation", "default"]), min_size=1, max_size=4
        ),
        "pools": st.lists(pool_strategy, min_size=1, max_size=3),
        "worker": st.fixed_dictionaries(
            {},
            optional={
                "softTimeLimitSeconds": st.sampled_from([60, 3000, 4000]),
                "timeLimitSeconds": st.sampled_from([60, 3600, 8000]),
                "visibilityTimeoutSeconds": st.sampled_from([100, 7200, 9000]),
            },
        ),
        "redis": st.fixed_dictionaries(
            {},
            optional={
                "mode": st.sampled_from(["managed", "external"]),
                "url": st.sampled_from(["", "redis://r:6379/0", "redis://:pw@r:6379/0"]),
                "passwordSecretRef": st.fixed_dictionaries({}, optional={"name": st.sampled_from(["", "creds"])}),
            },
        ),
        "exports": st.sampled_from([
            {}, {"volumeClaim": {}}, {"volumeClaim": {"accessMode": "ReadWriteMany", "size": "2Gi"}},
            {"volume": {"emptyDir": {}}}, {"volume": {}}, {"volume": {"emptyDir": {}, "subPath": "a/.."}},
            {"volume": {"persistentVolumeClaim": {"claimName": "x"}, "subPath": "a/..b"}},
            {"s3": {"bucket": "books"}}, {"s3": {"bucket": "bo"}}, {"volumeClaim": {}, "s3": {"bucket": "books"}},
            {"s3": {"bucket": "books", "endpoint": "ftp://x"}}, {"s3": {"bucket": "books", "prefix": "/x"}},
        ]),
        "autoscaling": st.fixed_dictionaries(
            {},
            optional={
                "enabled": st.booleans(),
                "source": st.sampled_from(["auto", "prometheus", "redis"]),
                "prometheusUrl": st.sampled_from(["", "http://prom:9090"]),
                "pollIntervalSeconds": st.sampled_from([0.5, 1, 5, 30]),
                "scaleDownWindowSeconds": st.sampled_from([0, 10, 60]),
                "staleAfterSeconds": st.sampled_from([1, 5, 30]),
            },
        ),
    },
)


@pytest.mark.filterwarnings("ignore:The recursion limit will not be reset")
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec_strategy)
def test_parse_queue_accepts_exactly_what_the_crd_accepts(spec: dict[str, Any]) -> None:
    raw = body(spec)
    crd_messages = validate_object(raw)
    try:
        parse_queue(raw)
        python_error = None
    except SpecError as exc:
        python_error = str(exc)
    if crd_messages:
        assert python_error is not None, f"CRD rejects ({crd_messages}) but parse_queue accepts"
    else:
        assert python_error is None, f"parse_queue rejects ({python_error}) but the CRD accepts"


def test_update_errors_match_the_crds_transition_rule() -> None:
    from bookgen_operator.core.spec import update_errors

    from tests.support.crd_validation import validate_update

    old_body = body({})
    for new_spec in (
        {"redis": {"persistence": {"size": "5Gi"}}},
        {"redis": {"persistence": {"enabled": False}}},
        {"redis": {"persistence": {"storageClassName": "fast"}}},
        {"flower": {"enabled": False}},
        {"redis": {"mode": "external", "url": "redis://r:6379/0", "passwordSecretRef": {"name": "s"}}},
    ):
        python = update_errors(parse_queue(old_body), parse_queue(body(new_spec)))
        crd = validate_update(old_body, body(new_spec))
        assert bool(python) == bool(crd), new_spec
        for message in python:
            assert any(message.split(": ", 1)[1] in m for m in crd)


def test_target_wait_defaults_to_60_s_a_pool_may_set_its_own_and_zero_turns_it_off() -> None:
    spec = {"autoscaling": {"targetWaitSeconds": 30},
            "pools": [{"name": "content", "queues": ["content_generation"], "autoscaling": {"targetWaitSeconds": 0}},
                      {"name": "monitoring", "queues": ["monitoring"]}]}
    for raw in (body(spec), defaulted(body(spec))):
        assert [p.policy.target_wait for p in parse_queue(raw).pools] == [None, 30.0]
    assert {p.policy.target_wait for p in parse_queue(body({})).pools} == {60.0}
    with pytest.raises(SpecError, match="targetWaitSeconds must be at least 0"):
        parse_queue(body({"autoscaling": {"targetWaitSeconds": -1}}))
