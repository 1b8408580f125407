"""The text generator as first-class fields: `spec.generator` (every worker) and `spec.pools[].generator`
(that pool's workers; it replaces the queue's whole), mapped onto the worker's own settings
(bookgen_worker/config.py: GENERATOR_ENV below). `offline` is the deterministic generator (no network);
`openai` any OpenAI-compatible chat-completions endpoint (OpenAI, OpenRouter, vLLM, Ollama, a gateway),
with its API key from a Secret, which reaches the pod as a secretKeyRef and nowhere else.

Where a generator is given, its variables are the operator's: `env` entries of the same names that
reach those workers are refused (a second, silently losing source of the same setting is a trap). Without
`generator` they stay ordinary user variables, as before this field existed. `envFrom` keys cannot be
checked (they live in the Secret); explicit env entries win over them, so ours do.
"""

from __future__ import annotations

from collections.abc import Sequence

from bookgen_operator.core.spec.model import Environment, SpecError
from bookgen_operator.core.spec.pod_model import Generator, GeneratorType
from bookgen_operator.core.spec.reader import Reader, is_dns_label, show, url_like

#: The worker settings a generator sets (bookgen_worker/config.py).
GENERATOR_ENV = ("BOOKGEN_GENERATOR", "BOOKGEN_OFFLINE_SECONDS", "BOOKGEN_LLM_BASE_URL", "BOOKGEN_LLM_MODEL",
                 "BOOKGEN_LLM_API_KEY", "BOOKGEN_LLM_TIMEOUT")
ENV_MESSAGE = ("env must not set BOOKGEN_GENERATOR, BOOKGEN_OFFLINE_SECONDS or BOOKGEN_LLM_* where a generator "
               "is given: the generator sets them")
OPENAI_MESSAGE = "generator.openai is required with type openai, and used only with it"
OFFLINE_MESSAGE = "generator.offline is used only with type offline"
CREDENTIALS_MESSAGE = ("generator.openai.baseUrl must not contain credentials: put the key in the Secret named by "
                       "apiKeySecretRef")


def read_generator(r: Reader) -> Generator | None:
    """`generator` of the object `r` reads (the spec, or a pool); None when not given."""
    if not r.has("generator"):
        return None
    g = r.obj("generator", ("type", "openai", "offline"))
    if not g.has("type"):
        raise SpecError(f"{g.path}: type is required (offline or openai)")
    kind: GeneratorType = g.choice("type", "offline", ("offline", "openai"))
    if g.has("openai") != (kind == "openai"):
        raise SpecError(f"{g.path}: {OPENAI_MESSAGE}")
    if g.has("offline") and kind != "offline":
        raise SpecError(f"{g.path}: {OFFLINE_MESSAGE}")
    if kind == "offline":
        offline = g.obj("offline", ("secondsPerText",))
        return Generator("offline", seconds_per_text=offline.number("secondsPerText", 0.0, 0, 600))
    o = g.obj("openai", ("baseUrl", "model", "apiKeySecretRef", "timeoutSeconds"))
    for required in ("baseUrl", "model"):
        if not o.has(required):
            raise SpecError(f"{o.path}: {required} is required")
    base_url = o.string("baseUrl", "", min_len=1, max_len=512)
    if not url_like(base_url, ("http://", "https://")):
        raise SpecError(f"{o.at('baseUrl')} must be an http:// or https:// URL (got {show(base_url)})")
    if "@" in base_url.partition("://")[2].partition("/")[0]:
        raise SpecError(f"{o.path}: {CREDENTIALS_MESSAGE}")
    ref = o.obj("apiKeySecretRef", ("name", "key"))
    secret = ref.string("name", "", min_len=1 if o.has("apiKeySecretRef") else 0)
    if secret and not all(is_dns_label(part) for part in secret.split(".")):
        raise SpecError(f"{ref.at('name')} must be the name of a Secret (got {show(secret)})")
    return Generator(
        "openai",
        base_url=base_url,
        model=o.string("model", "", min_len=1, max_len=256),
        timeout_seconds=o.number("timeoutSeconds", 60.0, 1, 3600),
        api_key_secret=secret,
        api_key_key=ref.string("key", "api-key", min_len=1),
    )


def check_generator_environment(queue_env: Environment, queue_generator: Generator | None,
                                pools: Sequence[tuple[str, Environment, Generator | None]]) -> None:
    """Refuse env entries that a generator sets, wherever they reach its workers: the queue's `env`
    reaches every pool, a pool's only its own. `pools`: (path, its own environment, its generator)."""
    if queue_generator is not None or any(g is not None for _, _, g in pools):
        _refuse(queue_env, "spec.env")
    for path, env, generator in pools:
        if queue_generator is not None or generator is not None:
            _refuse(env, f"{path}.env")


def _refuse(environment: Environment, path: str) -> None:
    for i, entry in enumerate(environment.env):
        if entry["name"] in GENERATOR_ENV:
            raise SpecError(f"{path}[{i}].name: {ENV_MESSAGE} (got {entry['name']})")
