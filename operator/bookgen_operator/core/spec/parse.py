"""Parse a BookGenQueue into typed, defaulted, validated objects.

`parse_queue(body)` applies the defaults of crds/bookgenqueue.yaml and checks the same rules as its
schema and CEL validations, raising `SpecError` with the same messages. So a spec that the API server
would reject is rejected here too (for `bookgen up`/`render` on one machine), and the operator never
depends on the API server's defaulting. tests/unit/test_spec.py holds both sides to agreement.

Pure: no I/O (reading a spec from a file is the command line's job: cli/spec_file.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TypedDict

from bookgen_operator.core.autoscaler.policy import Policy
from bookgen_operator.core.objects import Body
from bookgen_operator.core.spec.alerts import read_queue_alerts
from bookgen_operator.core.spec.clients import read_allowed_clients
from bookgen_operator.core.spec.defaults import (
    BEAT_LIMITS,
    BEAT_REQUESTS,
    DEFAULT_POOLS,
    DEFAULT_QUEUES,
    FLOWER_LIMITS,
    FLOWER_REQUESTS,
    POOL_LIMITS,
    POOL_REQUESTS,
    REDIS_LIMITS,
    REDIS_REQUESTS,
)
from bookgen_operator.core.spec.environment import read_environment
from bookgen_operator.core.spec.exports import read_exports
from bookgen_operator.core.spec.flower import read_url_prefix
from bookgen_operator.core.spec.generator import check_generator_environment, read_generator
from bookgen_operator.core.spec.model import (
    API_VERSION,
    KIND,
    AutoscalingSpec,
    BeatSpec,
    FlowerSpec,
    ImageSpec,
    MetricsSpec,
    PersistenceSpec,
    PoolSpec,
    PoolType,
    QueueSpec,
    RedisMode,
    RedisSpec,
    SpecError,
    Toggle,
    WorkerSpec,
)
from bookgen_operator.core.spec.pod_model import Volumes
from bookgen_operator.core.spec.pod_template import read_pod_template
from bookgen_operator.core.spec.reader import Reader, is_dns_label, quantity, read_resources, show, url_like
from bookgen_operator.core.spec.redis_memory import read_maxmemory
from bookgen_operator.core.spec.volumes import read_volumes

_NAME_MAX = 40
_POOL_NAME_MAX = 20
_QUEUE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")

# ------------------------------------------------------------------------------------------ parsing

_POLICY_FIELDS = (
    "targetPerSlot",
    "targetWaitSeconds",
    "targetOldestAgeSeconds",
    "scaleUpWindowSeconds",
    "scaleDownWindowSeconds",
    "maxStep",
    "activationThreshold",
    "tolerance",
    "fallbackReplicas",
    "staleAfterSeconds",
    "pollIntervalSeconds",
)


class PolicyKnobs(TypedDict):
    """The knobs an autoscaling block sets, as Policy's and AutoscalingSpec's keyword arguments."""

    target_per_slot: float
    target_wait: float | None
    target_oldest_age: float | None
    scale_up_window: float
    scale_down_window: float
    max_step: int | None
    activation_threshold: int
    tolerance: float
    fallback_replicas: int | None
    stale_after: float
    poll_interval: float


def _policy_values(r: Reader, base: AutoscalingSpec | None) -> PolicyKnobs:
    """The policy knobs of an autoscaling block; unset ones come from `base` (None = CRD defaults)."""
    b = base or AutoscalingSpec()
    return {
        "target_per_slot": r.number("targetPerSlot", b.target_per_slot, 0, above=True),
        # 0 turns the latency target off: the pool is sized by targetPerSlot alone.
        "target_wait": r.number("targetWaitSeconds", b.target_wait, 0, 86400) or None,
        # 0 turns the oldest-age guard off (a CRD field cannot be set to null).
        "target_oldest_age": r.number("targetOldestAgeSeconds", b.target_oldest_age, 0) or None,
        "scale_up_window": r.number("scaleUpWindowSeconds", b.scale_up_window, 0, 3600),
        "scale_down_window": r.number("scaleDownWindowSeconds", b.scale_down_window, 0, 86400),
        "max_step": r.integer("maxStep", b.max_step, 1),
        "activation_threshold": r.integer("activationThreshold", b.activation_threshold, 1),
        "tolerance": r.number("tolerance", b.tolerance, 0, 1),
        "fallback_replicas": r.integer("fallbackReplicas", b.fallback_replicas, 0),
        "stale_after": r.number("staleAfterSeconds", b.stale_after, 0, above=True),
        "poll_interval": r.number("pollIntervalSeconds", b.poll_interval, 0.1, 300),
    }


def _autoscaling(spec: Reader) -> AutoscalingSpec:
    r = spec.obj("autoscaling", ("enabled", "source", "prometheusUrl", *_POLICY_FIELDS))
    url = r.string("prometheusUrl", "", max_len=512)
    if url and not url_like(url, ("http://", "https://")):
        raise SpecError(f"{r.at('prometheusUrl')} must be an http:// or https:// URL (got {show(url)})")
    result = AutoscalingSpec(
        enabled=r.boolean("enabled", True),
        source=r.choice("source", "auto", ("auto", "prometheus", "endpoint", "redis")),
        prometheus_url=url,
        **_policy_values(r, None),
    )
    if result.source == "prometheus" and not result.prometheus_url:
        raise SpecError("spec.autoscaling: autoscaling.source prometheus needs autoscaling.prometheusUrl")
    return result


def _pool(raw: object, path: str, scaling: AutoscalingSpec, queue_volumes: Volumes) -> PoolSpec:
    r = Reader(
        raw,
        path,
        ("name", "queues", "concurrency", "poolType", "resources", "minReplicas", "maxReplicas", "autoscaling",
         "env", "envFrom", "volumes", "volumeMounts", "podTemplate", "generator"),
    )
    for required in ("name", "queues"):
        if not r.has(required):
            raise SpecError(f"{path}: {required} is required")
    name = r.string("name", "", min_len=1, max_len=_POOL_NAME_MAX)
    if not is_dns_label(name):
        raise SpecError(f"{r.at('name')} must contain only lower-case letters, digits and '-' (got {name!r})")
    queues = r.string_list("queues", (), max_items=32)
    if len(set(queues)) != len(queues):
        raise SpecError(f"{r.at('queues')}: a pool must not list a queue twice")
    concurrency = r.integer("concurrency", 1, 1, 64)
    pool_type: PoolType = r.choice("poolType", "prefork", ("prefork", "threads", "solo"))
    resources = read_resources(r, "resources", POOL_REQUESTS, POOL_LIMITS)
    min_replicas = r.integer("minReplicas", 1, 0, 100)
    max_replicas = r.integer("maxReplicas", 10, 1, 100)
    if min_replicas > max_replicas:
        raise SpecError(f"{path} ({name}): a pool's minReplicas must not exceed its maxReplicas")
    if pool_type == "solo" and concurrency != 1:
        raise SpecError(f"{path} ({name}): a solo pool runs one task at a time: its concurrency must be 1")
    knobs = _policy_values(r.obj("autoscaling", _POLICY_FIELDS), scaling)
    if knobs["scale_down_window"] < knobs["poll_interval"]:
        raise SpecError(
            f"{path} ({name}): autoscaling.scaleDownWindowSeconds must be at least pollIntervalSeconds "
            "(checked per pool, after its overrides)"
        )
    if knobs["stale_after"] <= knobs["poll_interval"]:
        raise SpecError(
            f"{path} ({name}): autoscaling.staleAfterSeconds must be longer than pollIntervalSeconds, "
            "or every observation counts as stale (checked per pool, after its overrides)"
        )
    policy = Policy(min_replicas=min_replicas, max_replicas=max_replicas, **knobs)
    return PoolSpec(name, queues, concurrency, pool_type, resources, min_replicas, max_replicas, policy,
                    read_environment(r), read_volumes(r, queue_volumes), read_pod_template(r), read_generator(r))


def _redis(spec: Reader) -> RedisSpec:
    r = spec.obj("redis", ("mode", "url", "passwordSecretRef", "image", "persistence", "resources", "allowedClients",
                           "podTemplate", "maxmemory"))
    mode: RedisMode = r.choice("mode", "managed", ("managed", "external"))
    url = r.string("url", "", max_len=512)
    if url and not url_like(url, ("redis://", "rediss://")):
        raise SpecError(f"{r.at('url')} must start with redis:// or rediss://")
    ref = r.obj("passwordSecretRef", ("name", "key"))
    secret = ref.string("name", "")
    key = ref.string("key", "password", min_len=1)
    image = r.string("image", "redis:7.2.5-alpine", min_len=1, max_len=256)
    p = r.obj("persistence", ("enabled", "size", "storageClassName"))
    size = p.string("size", "1Gi")
    if size.endswith("m") or quantity(size, p.at("size")) != size:
        raise SpecError(f"{p.at('size')} must be a size such as 1Gi (got {size!r})")
    persistence = PersistenceSpec(p.boolean("enabled", True), size, p.string("storageClassName", ""))
    resources = read_resources(r, "resources", REDIS_REQUESTS, REDIS_LIMITS)
    if mode == "external" and not url:
        raise SpecError("spec.redis: redis.url is required when redis.mode is external")
    if mode == "external" and not secret:
        raise SpecError(
            "spec.redis: redis.passwordSecretRef.name is required when redis.mode is external: "
            "the password must come from a Secret"
        )
    if mode != "external" and url:
        raise SpecError(
            "spec.redis: redis.url is only used with redis.mode external; "
            "a managed Redis gets its address from the operator"
        )
    if "@" in url:
        raise SpecError(
            "spec.redis: redis.url must not contain credentials; "
            "put the password in the Secret named by redis.passwordSecretRef"
        )
    return RedisSpec(mode, url, secret, key, image, persistence, resources,
                     read_allowed_clients(r, managed=mode == "managed"), read_pod_template(r),
                     read_maxmemory(r, resources.get("limits", {}), managed=mode == "managed"))


_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
_LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


def _pull_secrets(raw: object) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list | tuple) or len(raw) > 16:
        raise SpecError(f"spec.imagePullSecrets must be a list of up to 16 {{name: ...}} (got {show(raw)})")
    names = []
    for i, item in enumerate(raw):
        name = item.get("name") if isinstance(item, Mapping) else None
        if not isinstance(name, str) or not name:
            raise SpecError(f"spec.imagePullSecrets[{i}] must be {{name: <Secret name>}} (got {show(item)})")
        names.append(name)
    return tuple(dict.fromkeys(names))


def label_map(raw: object, path: str) -> dict[str, str]:
    """A map of Kubernetes labels, checked like the API server checks label keys and values."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise SpecError(f"{path} must be a map of label names to values (got {show(raw)})")
    for key, value in raw.items():
        if not isinstance(key, str) or not _LABEL_KEY.match(key):
            raise SpecError(f"{path}: {show(key)} is not a valid label name")
        if not isinstance(value, str) or not _LABEL_VALUE.match(value):
            raise SpecError(f"{path}.{key}: {show(value)} is not a valid label value")
    return {str(k): str(v) for k, v in raw.items()}


def _worker(spec: Reader) -> WorkerSpec:
    r = spec.obj(
        "worker",
        (
            "softTimeLimitSeconds",
            "timeLimitSeconds",
            "visibilityTimeoutSeconds",
            "prefetchMultiplier",
            "maxTasksPerChild",
        ),
    )
    worker = WorkerSpec(
        soft_time_limit=r.integer("softTimeLimitSeconds", 3000, 1, 86400),
        time_limit=r.integer("timeLimitSeconds", 3600, 1, 86400),
        visibility_timeout=r.integer("visibilityTimeoutSeconds", 7200, 1, 604800),
        prefetch_multiplier=r.integer("prefetchMultiplier", 1, 1, 100),
        max_tasks_per_child=r.integer("maxTasksPerChild", 1000, 1, 1000000),
    )
    if worker.time_limit <= worker.soft_time_limit:
        raise SpecError(
            "spec.worker: worker.timeLimitSeconds must be greater than softTimeLimitSeconds, "
            "so a task can clean up after the soft limit"
        )
    if worker.visibility_timeout <= worker.time_limit:
        raise SpecError(
            "spec.worker: worker.visibilityTimeoutSeconds must exceed timeLimitSeconds, "
            "or running tasks are delivered twice"
        )
    return worker


def _metadata(body: Body) -> tuple[str, str, str, int]:
    meta = body.get("metadata") or {}
    if not isinstance(meta, Mapping):
        raise SpecError("metadata must be an object")
    name = meta.get("name") or ""
    if not isinstance(name, str) or not name:
        raise SpecError("metadata.name is required")
    if len(name) > _NAME_MAX:
        raise SpecError(
            "metadata.name must be at most 40 characters, so that child names such as <name>-redis-headless stay valid"
        )
    if not (is_dns_label(name) and name[0].isalpha()):
        raise SpecError(
            "metadata.name must start with a letter and contain only lower-case letters, digits and '-', "
            "because it names Services"
        )
    namespace = str(meta.get("namespace") or "default")
    generation = meta.get("generation") or 0
    return name, namespace, str(meta.get("uid") or ""), int(generation)


def parse_queue(body: Body) -> QueueSpec:
    """A BookGenQueue body (dict as from the API or a YAML file) -> QueueSpec, or SpecError."""
    if not isinstance(body, Mapping):
        raise SpecError(f"a BookGenQueue must be an object (got {show(body)})")
    kind = body.get("kind")
    if kind is not None and kind != KIND:
        raise SpecError(f"expected kind {KIND} (got {show(kind)})")
    api_version = body.get("apiVersion")
    if api_version is not None and api_version != API_VERSION:
        raise SpecError(f"expected apiVersion {API_VERSION} (got {show(api_version)})")
    name, namespace, uid, generation = _metadata(body)
    spec = Reader(
        body.get("spec"),
        "spec",
        ("image", "imagePullSecrets", "queues", "pools", "redis", "beat", "flower", "worker", "metrics",
         "autoscaling", "env", "envFrom", "exports", "volumes", "volumeMounts", "podTemplate", "generator"),
    )

    img = spec.obj("image", ("repository", "tag", "pullPolicy", "digest"))
    image = ImageSpec(
        repository=img.string("repository", ImageSpec.repository, min_len=1, max_len=200),
        tag=img.string("tag", ImageSpec.tag, min_len=1, max_len=128),
        pull_policy=img.choice("pullPolicy", "IfNotPresent", ("Always", "IfNotPresent", "Never")),
        digest=img.string("digest", "", max_len=71),
        pinned=any(key in img.value for key in ("repository", "tag", "digest")),
    )
    if image.digest and not _DIGEST.match(image.digest):
        raise SpecError(f"spec.image.digest must be sha256: and 64 lower-case hex digits (got {show(image.digest)})")
    pull_secrets = _pull_secrets(spec.value.get("imagePullSecrets"))

    queues = spec.string_list("queues", DEFAULT_QUEUES, max_items=32)
    for queue in queues:
        if len(queue) > 63 or not set(queue) <= _QUEUE_CHARS:
            raise SpecError(f"spec.queues: {queue!r} must be 1-63 letters, digits, '_', '.' or '-'")
    if len(set(queues)) != len(queues):
        raise SpecError("spec.queues: spec.queues must not list a queue twice")

    scaling = _autoscaling(spec)
    raw_pools = spec.value.get("pools", DEFAULT_POOLS)
    if not isinstance(raw_pools, list | tuple) or not 1 <= len(raw_pools) <= 16:
        raise SpecError(f"spec.pools must be a list of 1 to 16 pools (got {show(raw_pools)})")
    volumes = read_volumes(spec)
    pools = tuple(_pool(raw, f"spec.pools[{i}]", scaling, volumes) for i, raw in enumerate(raw_pools))
    names = [p.name for p in pools]
    if len(set(names)) != len(names):
        raise SpecError(f"spec.pools: pool names must be unique (got {', '.join(names)})")
    for pool in pools:
        missing = [q for q in pool.queues if q not in queues]
        if missing:
            raise SpecError(
                f"spec: every queue a pool consumes must be declared in spec.queues "
                f"(pool {pool.name} consumes undeclared {', '.join(missing)})"
            )
    if not any("monitoring" in p.queues for p in pools):
        raise SpecError(
            "spec: one pool must consume the monitoring queue: its workers measure the queues "
            "and serve the metrics endpoint"
        )
    if not scaling.enabled and any(p.min_replicas < 1 for p in pools):
        raise SpecError("spec: with autoscaling disabled every pool needs minReplicas >= 1, or it never gets a worker")

    b = spec.obj("beat", ("enabled", "resources", "podTemplate"))
    f = spec.obj("flower", ("enabled", "authSecretRef", "maxTasks", "resources", "podTemplate",
                            "purgeOfflineWorkersSeconds", "urlPrefix"))
    environment, generator = read_environment(spec), read_generator(spec)
    check_generator_environment(environment, generator,
                                [(f"spec.pools[{i}]", p.environment, p.generator) for i, p in enumerate(pools)])
    m = spec.obj("metrics", ("port", "serviceMonitor", "prometheusRule", "monitorLabels", "alerts"))
    toggles: tuple[Toggle, ...] = ("auto", "always", "never")
    metrics = MetricsSpec(
        port=m.integer("port", 9808, 1024, 65535),
        service_monitor=m.obj("serviceMonitor", ("enabled",)).choice("enabled", "auto", toggles),
        prometheus_rule=m.obj("prometheusRule", ("enabled",)).choice("enabled", "auto", toggles),
        monitor_labels=label_map(m.value.get("monitorLabels"), "spec.metrics.monitorLabels"),
        alerts=read_queue_alerts(m),
    )
    return QueueSpec(
        name=name,
        namespace=namespace,
        uid=uid,
        image=image,
        queues=queues,
        pools=pools,
        redis=_redis(spec),
        beat=BeatSpec(b.boolean("enabled", True), read_resources(b, "resources", BEAT_REQUESTS, BEAT_LIMITS),
                      read_pod_template(b)),
        flower=FlowerSpec(
            enabled=f.boolean("enabled", True),
            auth_secret_name=f.obj("authSecretRef", ("name",)).string("name", ""),
            max_tasks=f.integer("maxTasks", 10000, 100, 1000000),
            resources=read_resources(f, "resources", FLOWER_REQUESTS, FLOWER_LIMITS),
            pod_template=read_pod_template(f),
            purge_offline_workers_seconds=f.integer("purgeOfflineWorkersSeconds", 300, 0, 604800),
            url_prefix=read_url_prefix(f),
        ),
        worker=_worker(spec),
        metrics=metrics,
        autoscaling=scaling,
        generation=generation,
        image_pull_secrets=pull_secrets,
        environment=environment,
        exports=read_exports(spec),
        volumes=volumes,
        pod_template=read_pod_template(spec),
        generator=generator,
    )


def update_errors(old: QueueSpec, new: QueueSpec) -> list[str]:
    """What the CRD's transition rules reject when `old` becomes `new` (same messages)."""
    errors = []
    if old.redis.managed and new.redis.managed and old.redis.persistence != new.redis.persistence:
        errors.append(
            "spec.redis: redis.persistence cannot change once a managed Redis exists: a StatefulSet's volume "
            "claims are immutable (recreate the BookGenQueue to change it)"
        )
    return errors
