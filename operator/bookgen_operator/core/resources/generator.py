"""The text generator of a pool's workers as their environment (bookgen_worker/config.py's settings).

The API key is a secretKeyRef: the kubelet reads it from the Secret when it starts the container, so
its value is in no manifest, in no `bookgen render` output and never in the operator's hands.
"""

from __future__ import annotations

from bookgen_operator.core.objects import JSON
from bookgen_operator.core.spec.pod_model import Generator


def _seconds(value: float) -> str:
    return f"{value:g}"


def generator_env(generator: Generator | None) -> list[JSON]:
    """Nothing without a generator: the worker's own default (offline), or the user's env, applies."""
    if generator is None:
        return []
    if generator.type == "offline":
        return [{"name": "BOOKGEN_GENERATOR", "value": "offline"},
                {"name": "BOOKGEN_OFFLINE_SECONDS", "value": _seconds(generator.seconds_per_text)}]
    env: list[JSON] = [
        {"name": "BOOKGEN_GENERATOR", "value": "openai"},
        {"name": "BOOKGEN_LLM_BASE_URL", "value": generator.base_url},
        {"name": "BOOKGEN_LLM_MODEL", "value": generator.model},
        {"name": "BOOKGEN_LLM_TIMEOUT", "value": _seconds(generator.timeout_seconds)},
    ]
    if generator.api_key_secret:
        env.append({"name": "BOOKGEN_LLM_API_KEY", "valueFrom": {"secretKeyRef": {
            "name": generator.api_key_secret, "key": generator.api_key_key}}})
    return env
