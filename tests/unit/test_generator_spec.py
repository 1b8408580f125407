"""spec.generator and a pool's: the workers' settings it sets (the API key only ever as a secretKeyRef),
which env entries it then refuses, which pods a change rolls, and that the key is in no manifest."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from bookgen_operator.cli.render import render_manifests
from bookgen_operator.core.resources import desired_objects
from bookgen_operator.core.spec import QueueSpec, SpecError, parse_queue
from bookgen_operator.core.spec.defaults import DEFAULT_POOLS
from bookgen_operator.core.spec.environment import RESERVED
from bookgen_operator.core.spec.generator import GENERATOR_ENV

OPENAI = {"type": "openai", "openai": {"baseUrl": "http://llm.books.svc:8000/v1", "model": "test-model",
                                       "apiKeySecretRef": {"name": "llm", "key": "token"}, "timeoutSeconds": 30}}


def queue(spec: dict[str, Any]) -> QueueSpec:
    return parse_queue({"metadata": {"name": "q", "namespace": "books", "uid": "u"}, "spec": spec})


def pools_with(name: str, **fields: Any) -> list[dict[str, Any]]:
    pools = copy.deepcopy(DEFAULT_POOLS)
    next(p for p in pools if p["name"] == name).update(fields)
    return pools


def env_of(spec: QueueSpec) -> dict[str, dict[str, Any]]:
    """Workload name -> its container's env, by variable name."""
    return {o["metadata"]["name"]: {e["name"]: e for e in o["spec"]["template"]["spec"]["containers"][0]["env"]}
            for o in desired_objects(spec) if o["kind"] in ("Deployment", "StatefulSet")}


def test_openai_sets_the_workers_settings_with_the_key_from_the_secret() -> None:
    found = env_of(queue({"generator": OPENAI}))
    for name, env in found.items():
        if not name.startswith("q-worker-"):
            assert not set(GENERATOR_ENV) & env.keys(), f"{name} writes no text"
            continue
        assert env["BOOKGEN_GENERATOR"]["value"] == "openai"
        assert env["BOOKGEN_LLM_BASE_URL"]["value"] == "http://llm.books.svc:8000/v1"
        assert env["BOOKGEN_LLM_MODEL"]["value"] == "test-model"
        assert env["BOOKGEN_LLM_TIMEOUT"]["value"] == "30"
        assert env["BOOKGEN_LLM_API_KEY"] == {"name": "BOOKGEN_LLM_API_KEY",
                                              "valueFrom": {"secretKeyRef": {"name": "llm", "key": "token"}}}


def test_offline_and_a_keyless_endpoint() -> None:
    env = env_of(queue({"generator": {"type": "offline", "offline": {"secondsPerText": 1.5}}}))["q-worker-content"]
    assert (env["BOOKGEN_GENERATOR"]["value"], env["BOOKGEN_OFFLINE_SECONDS"]["value"]) == ("offline", "1.5")
    keyless = {"type": "openai", "openai": {"baseUrl": "http://ollama:11434/v1", "model": "llama3"}}
    env = env_of(queue({"generator": keyless}))["q-worker-content"]
    assert "BOOKGEN_LLM_API_KEY" not in env and env["BOOKGEN_LLM_TIMEOUT"]["value"] == "60"


def test_a_pools_generator_replaces_the_queues_for_its_workers_only() -> None:
    found = env_of(queue({"generator": {"type": "offline"}, "pools": pools_with("content", generator=OPENAI)}))
    assert found["q-worker-content"]["BOOKGEN_GENERATOR"]["value"] == "openai"
    assert "BOOKGEN_OFFLINE_SECONDS" not in found["q-worker-content"]
    assert found["q-worker-validation"]["BOOKGEN_GENERATOR"]["value"] == "offline"


def test_without_a_generator_nothing_changes_and_env_may_set_the_variables() -> None:
    spec = queue({"env": [{"name": "BOOKGEN_GENERATOR", "value": "openai"},
                          {"name": "BOOKGEN_LLM_BASE_URL", "value": "http://x/v1"}]})
    assert spec.generator is None
    assert env_of(spec)["q-worker-content"]["BOOKGEN_GENERATOR"]["value"] == "openai"


@pytest.mark.parametrize(("spec", "message"), [
    ({"generator": OPENAI, "env": [{"name": "BOOKGEN_LLM_API_KEY", "value": "sk-inline"}]},
     "spec.env[0].name: env must not set BOOKGEN_GENERATOR, BOOKGEN_OFFLINE_SECONDS or BOOKGEN_LLM_* where a "
     "generator is given: the generator sets them (got BOOKGEN_LLM_API_KEY)"),
    ({"pools": pools_with("content", generator=OPENAI), "env": [{"name": "BOOKGEN_LLM_MODEL", "value": "m"}]},
     "spec.env[0].name: env must not set"),  # the queue's env reaches the content pool
    ({"generator": OPENAI, "pools": pools_with("export", env=[{"name": "BOOKGEN_GENERATOR", "value": "offline"}])},
     "spec.pools[2].env[0].name: env must not set"),
    ({"generator": {"type": "openai"}}, "spec.generator: generator.openai is required with type openai"),
    ({"generator": {"openai": OPENAI["openai"]}}, "spec.generator: type is required"),
    ({"generator": {**OPENAI, "offline": {}}}, "generator.offline is used only with type offline"),
    ({"generator": {"type": "gpt"}}, "spec.generator.type must be one of offline, openai"),
    ({"generator": {"type": "openai", "openai": {"baseUrl": "ftp://x", "model": "m"}}},
     "spec.generator.openai.baseUrl must be an http:// or https:// URL"),
    ({"generator": {"type": "openai", "openai": {"baseUrl": "https://u:sk-1@x/v1", "model": "m"}}},
     "generator.openai.baseUrl must not contain credentials"),
    ({"generator": {"type": "openai", "openai": {"baseUrl": "https://x/v1"}}},
     "spec.generator.openai: model is required"),
    ({"generator": {"type": "openai", "openai": {**OPENAI["openai"], "apiKeySecretRef": {"key": "k"}}}},
     "spec.generator.openai.apiKeySecretRef.name must have 1 to 253 characters"),
    ({"generator": {"type": "offline", "offline": {"secondsPerText": 601}}}, "secondsPerText must be at least 0"),
])  # fmt: skip
def test_a_bad_generator_is_refused_in_one_line_naming_the_field(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as err:
        queue(spec)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert "sk-1" not in str(err.value) and "sk-inline" not in str(err.value)


def test_every_variable_the_operator_sets_is_reserved_or_the_generators() -> None:
    ours = {name for wl, env in env_of(queue({"generator": OPENAI})).items() if wl != "q-redis" for name in env}
    assert ours <= RESERVED | set(GENERATOR_ENV), ours - RESERVED - set(GENERATOR_ENV)


def test_a_change_rolls_only_the_workers_it_concerns() -> None:
    def objects(spec: dict[str, Any]) -> dict[tuple[str, str], Any]:
        return {(o["kind"], o["metadata"]["name"]): o for o in desired_objects(queue(spec))}

    before = objects({})
    one = objects({"pools": pools_with("content", generator=OPENAI)})
    assert [k for k in before if before[k] != one[k]] == [("Deployment", "q-worker-content")]
    every = objects({"generator": OPENAI})
    assert sorted(k[1] for k in before if before[k] != every[k]) == [
        "q-worker-content", "q-worker-export", "q-worker-monitoring", "q-worker-validation"]


def test_the_render_references_the_key_and_never_holds_it(tmp_path: Path) -> None:
    text = render_manifests(queue({"generator": OPENAI}))
    assert text.count("secretKeyRef") >= 4 and "name: llm" in text
    key_entries = [e for doc in yaml.safe_load_all(text) if doc and doc.get("kind") == "Deployment"
                   for c in doc["spec"]["template"]["spec"]["containers"] for e in c["env"]
                   if e["name"] == "BOOKGEN_LLM_API_KEY"]
    assert key_entries and all("value" not in e for e in key_entries)
