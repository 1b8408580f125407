"""spec.env/envFrom and spec.pools[].env/envFrom: what parse_queue accepts and refuses, and where the
builders put them (every BookGen container of the queue; a pool's only in that pool's workers)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from bookgen_operator.core.resources import desired_objects
from bookgen_operator.core.spec import QueueSpec, SpecError, parse_queue
from bookgen_operator.core.spec.defaults import DEFAULT_POOLS
from bookgen_operator.core.spec.environment import RESERVED

SECRET_KEY = {"name": "BOOKGEN_LLM_API_KEY", "valueFrom": {"secretKeyRef": {"name": "llm", "key": "api-key"}}}


def queue(spec: dict[str, Any]) -> QueueSpec:
    return parse_queue({"metadata": {"name": "q", "namespace": "books", "uid": "u"}, "spec": spec})


def pools_with(name: str, **fields: Any) -> list[dict[str, Any]]:
    pools = copy.deepcopy(DEFAULT_POOLS)
    next(p for p in pools if p["name"] == name).update(fields)
    return pools


def containers(spec: QueueSpec) -> dict[str, dict[str, Any]]:
    """Object name -> its (only) container."""
    return {o["metadata"]["name"]: o["spec"]["template"]["spec"]["containers"][0] for o in desired_objects(spec)
            if o["kind"] in ("Deployment", "StatefulSet")}


def test_queue_wide_environment_reaches_every_bookgen_container_and_not_redis() -> None:
    spec = queue({"env": [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}, SECRET_KEY],
                  "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "APP_"}]})
    found = containers(spec)
    for name, container in found.items():
        names = [e["name"] for e in container.get("env", [])]
        if name == "q-redis":
            assert "HTTPS_PROXY" not in names and "envFrom" not in container
            continue
        # After ours, in the user's order: the kubelet expands $(VAR) references in that order too.
        assert names[-2:] == ["HTTPS_PROXY", "BOOKGEN_LLM_API_KEY"], name
        assert container["env"][-1] == SECRET_KEY, "the key comes from the Secret, never inlined"
        assert container["envFrom"] == [{"configMapRef": {"name": "settings"}, "prefix": "APP_"}], name


def test_a_pools_environment_reaches_only_its_workers_and_wins_over_the_queues() -> None:
    spec = queue({"env": [{"name": "BOOKGEN_GENERATOR", "value": "offline"}],
                  "pools": pools_with("content", env=[{"name": "BOOKGEN_GENERATOR", "value": "openai"}],
                                      envFrom=[{"secretRef": {"name": "llm"}}])})
    found = containers(spec)
    content = found["q-worker-content"]
    assert [e for e in content["env"] if e["name"] == "BOOKGEN_GENERATOR"] == [
        {"name": "BOOKGEN_GENERATOR", "value": "openai"}]
    assert content["envFrom"] == [{"secretRef": {"name": "llm"}}]
    for name in ("q-worker-validation", "q-beat", "q-flower"):
        assert {"name": "BOOKGEN_GENERATOR", "value": "offline"} in found[name]["env"]
        assert "envFrom" not in found[name]


def test_a_change_of_one_pools_environment_changes_only_that_pools_deployment() -> None:
    before = {(o["kind"], o["metadata"]["name"]): o for o in desired_objects(queue({}))}
    after = {(o["kind"], o["metadata"]["name"]): o for o in desired_objects(
        queue({"pools": pools_with("export", env=[{"name": "BOOKGEN_OFFLINE_SECONDS", "value": "2"}])}))}
    assert before.keys() == after.keys()
    assert [key for key in before if before[key] != after[key]] == [("Deployment", "q-worker-export")]


def test_without_environment_the_manifests_are_as_before() -> None:
    for container in containers(queue({})).values():
        assert "envFrom" not in container
        assert not any(e["name"].startswith("HTTP") for e in container.get("env", []))


def test_every_variable_the_operator_sets_is_reserved() -> None:
    """The list the parser refuses is the list the builders write: a new variable of ours cannot be
    overridden by accident (nor does the list drift)."""
    spec = queue({"flower": {"enabled": True}, "beat": {"enabled": True}})
    ours = {e["name"] for name, c in containers(spec).items() if name != "q-redis" for e in c.get("env", [])}
    assert ours <= RESERVED, ours - RESERVED


@pytest.mark.parametrize(("env", "message"), [
    ([{"name": "REDIS_PASSWORD", "value": "x"}], "spec.env[0].name: REDIS_PASSWORD is set by the operator"),
    ([{"name": "BOOKGEN_HEARTBEAT_FILE", "value": "/x"}], "set by the operator itself and cannot be overridden"),
    ([{"name": "1ST", "value": "x"}], "spec.env[0].name must be letters, digits"),
    ([{"name": "A", "value": "x"}, {"name": "A", "value": "y"}], "an environment variable is listed twice (A)"),
    ([{"name": "A", "value": "x", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
     "give value or valueFrom, not both"),
    ([{"name": "A", "valueFrom": {}}], "valueFrom names exactly one of"),
    ([{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s"}}}], "spec.env[0].valueFrom.secretKeyRef.key must have"),
    ([{"name": "A", "valueFrom": {"secretKeyRef": {"name": "Not_A_Name", "key": "k"}}}],
     "must be the name of a Secret or ConfigMap"),
    ("HTTPS_PROXY=x", "spec.env must be a list"),
])  # fmt: skip
def test_a_bad_environment_is_refused_in_one_line_naming_the_field(env: Any, message: str) -> None:
    with pytest.raises(SpecError) as err:
        queue({"env": env})
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_bad_pool_environment_names_the_pool_entry() -> None:
    with pytest.raises(SpecError) as err:
        queue({"pools": pools_with("content", envFrom=[{"secretRef": {"name": "a"}, "configMapRef": {"name": "b"}}])})
    assert str(err.value) == "spec.pools[0].envFrom[0]: an envFrom entry names exactly one of secretRef, configMapRef"
