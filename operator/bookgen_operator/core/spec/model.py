"""The typed BookGenQueue: what parse_queue (spec.py) produces. Frozen dataclasses, no logic beyond
derived names."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from bookgen_operator.core.autoscaler.policy import Policy
from bookgen_operator.core.objects import JSON
from bookgen_operator.core.spec.alert_model import AlertSettings
from bookgen_operator.core.spec.defaults import (
    BEAT_LIMITS,
    BEAT_REQUESTS,
    FLOWER_LIMITS,
    FLOWER_REQUESTS,
    REDIS_LIMITS,
    REDIS_REQUESTS,
)
from bookgen_operator.core.spec.pod_model import Generator, PodTemplate, Volumes

GROUP = "bookgen.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "BookGenQueue"
PLURAL = "bookgenqueues"

PoolType = Literal["prefork", "threads", "solo"]
Toggle = Literal["auto", "always", "never"]
RedisMode = Literal["managed", "external"]
MetricsSourceKind = Literal["auto", "prometheus", "endpoint", "redis"]


class SpecError(ValueError):
    """The BookGenQueue cannot work as written; the message says which field and why, in one line."""


@dataclass(frozen=True)
class Environment:
    """env (EnvVar) and envFrom (EnvFromSource) objects a user gives BookGen's processes, checked by
    spec/environment.py, in the user's order."""

    env: tuple[JSON, ...] = ()
    env_from: tuple[JSON, ...] = ()

    def __add__(self, other: Environment) -> Environment:
        """The queue's environment, then a pool's (a pool's entry of the same name wins, as later
        entries do in Kubernetes)."""
        names = {e["name"] for e in other.env}
        return Environment((*(e for e in self.env if e["name"] not in names), *other.env),
                           (*self.env_from, *other.env_from))


@dataclass(frozen=True)
class ImageSpec:
    repository: str = "ghcr.io/bookgen/bookgen-queue"
    tag: str = "0.1.0"
    pull_policy: str = "IfNotPresent"
    #: sha256:<hex>; when set the kubelet pulls by content and the tag is informative only.
    digest: str = ""
    #: The spec names repository, tag or digest. Unpinned, the queue runs the operator's own image
    #: (OperatorDefaults.image), so `helm upgrade` to a new operator image rolls it too.
    pinned: bool = False

    @property
    def ref(self) -> str:
        return f"{self.repository}:{self.tag}" + (f"@{self.digest}" if self.digest else "")


@dataclass(frozen=True)
class PersistenceSpec:
    enabled: bool = True
    size: str = "1Gi"
    storage_class: str = ""


@dataclass(frozen=True)
class RedisSpec:
    mode: RedisMode = "managed"
    url: str = ""
    #: Empty in managed mode = the operator generates `<cr>-redis` (see QueueSpec.redis_secret_name).
    password_secret_name: str = ""
    password_secret_key: str = "password"
    image: str = "redis:7.2.5-alpine"
    persistence: PersistenceSpec = field(default_factory=PersistenceSpec)
    resources: Mapping[str, Mapping[str, str]] = field(
        default_factory=lambda: {"requests": dict(REDIS_REQUESTS), "limits": dict(REDIS_LIMITS)}
    )
    #: NetworkPolicyPeers (pod and namespace selectors) admitted to Redis beside the queue's own pods and
    #: the operator: the user's producers (spec.redis.allowedClients, checked by spec/clients.py).
    allowed_clients: tuple[JSON, ...] = ()
    #: spec.redis.podTemplate (the queue-wide spec.podTemplate is for BookGen's pods, not Redis).
    pod_template: PodTemplate = field(default_factory=PodTemplate)
    #: spec.redis.maxmemory, a size such as 200Mi; "" = 80% of the memory limit (resources/redis_memory.py).
    maxmemory: str = ""

    @property
    def managed(self) -> bool:
        return self.mode == "managed"


@dataclass(frozen=True)
class BeatSpec:
    enabled: bool = True
    resources: Mapping[str, Mapping[str, str]] = field(
        default_factory=lambda: {"requests": dict(BEAT_REQUESTS), "limits": dict(BEAT_LIMITS)}
    )
    #: spec.beat.podTemplate, over spec.podTemplate.
    pod_template: PodTemplate = field(default_factory=PodTemplate)


@dataclass(frozen=True)
class FlowerSpec:
    enabled: bool = True
    #: Empty = the operator generates `<cr>-flower-auth` (keys username, password).
    auth_secret_name: str = ""
    max_tasks: int = 10000
    resources: Mapping[str, Mapping[str, str]] = field(
        default_factory=lambda: {"requests": dict(FLOWER_REQUESTS), "limits": dict(FLOWER_LIMITS)}
    )
    #: spec.flower.podTemplate, over spec.podTemplate.
    pod_template: PodTemplate = field(default_factory=PodTemplate)
    #: Forget a worker this long after it went offline (0: never); autoscaled pools keep naming new ones.
    purge_offline_workers_seconds: int = 300
    #: Served under this path (no slashes around it), e.g. behind an Ingress; empty: at the root.
    url_prefix: str = ""


@dataclass(frozen=True)
class WorkerSpec:
    soft_time_limit: int = 3000
    time_limit: int = 3600
    visibility_timeout: int = 7200
    prefetch_multiplier: int = 1
    max_tasks_per_child: int = 1000


@dataclass(frozen=True)
class MetricsSpec:
    port: int = 9808
    service_monitor: Toggle = "auto"
    prometheus_rule: Toggle = "auto"
    #: Extra labels of the ServiceMonitor/PrometheusRule (e.g. release: kps); the operator's default if empty.
    monitor_labels: Mapping[str, str] = field(default_factory=dict)
    #: spec.metrics.alerts: which alerts, their thresholds, labels and runbook links (over the chart's).
    alerts: AlertSettings = field(default_factory=AlertSettings)


@dataclass(frozen=True)
class AutoscalingSpec:
    """spec.autoscaling: the loop's global settings and the policy defaults every pool inherits."""

    enabled: bool = True
    source: MetricsSourceKind = "auto"
    prometheus_url: str = ""
    # The policy knobs default to Policy's own, the values bench/simulate.py measures; the CRD's
    # defaults must match (tests/unit/test_crd_schema.py checks).
    poll_interval: float = Policy.poll_interval
    target_per_slot: float = Policy.target_per_slot
    target_wait: float | None = Policy.target_wait
    target_oldest_age: float | None = Policy.target_oldest_age
    scale_up_window: float = Policy.scale_up_window
    scale_down_window: float = Policy.scale_down_window
    max_step: int | None = Policy.max_step
    activation_threshold: int = Policy.activation_threshold
    tolerance: float = Policy.tolerance
    fallback_replicas: int | None = Policy.fallback_replicas
    stale_after: float = Policy.stale_after


@dataclass(frozen=True)
class ExportsClaim:
    """spec.exports.volumeClaim: the claim the operator makes, `<queue>-exports` (spec/exports.py)."""

    size: str = "1Gi"
    storage_class: str = ""
    access_mode: str = "ReadWriteOnce"


@dataclass(frozen=True)
class ExportsVolume:
    """spec.exports.volume: a volume the user names (a claim of theirs, or an emptyDir)."""

    claim_name: str = ""
    #: emptyDir's sizeLimit; used when claim_name is empty.
    empty_dir_size: str = ""
    sub_path: str = ""


@dataclass(frozen=True)
class ExportsS3:
    """spec.exports.s3: an S3-compatible bucket; the keys come from a Secret, never from the spec."""

    bucket: str
    endpoint: str = ""
    prefix: str = ""
    region: str = ""
    addressing_style: str = "path"
    insecure_skip_tls_verify: bool = False
    #: Empty: no Secret; the pods' own identity (or nothing) signs the requests.
    secret_name: str = ""
    access_key_id_key: str = "accessKeyId"
    secret_access_key_key: str = "secretAccessKey"


@dataclass(frozen=True)
class ExportsSpec:
    """spec.exports: where finished books go. Unset = a claim the operator makes (volumeClaim)."""

    claim: ExportsClaim | None = field(default_factory=ExportsClaim)
    volume: ExportsVolume | None = None
    s3: ExportsS3 | None = None


@dataclass(frozen=True)
class PoolSpec:
    name: str
    queues: tuple[str, ...]
    concurrency: int
    pool_type: PoolType
    resources: Mapping[str, Mapping[str, str]]
    min_replicas: int
    max_replicas: int
    policy: Policy
    #: This pool's own env/envFrom (spec.pools[].env), after the queue's.
    environment: Environment = field(default_factory=lambda: Environment())
    #: This pool's own volumes and mounts (spec.pools[].volumes), after the queue's.
    volumes: Volumes = field(default_factory=Volumes)
    #: spec.pools[].podTemplate, over spec.podTemplate.
    pod_template: PodTemplate = field(default_factory=PodTemplate)
    #: spec.pools[].generator: replaces spec.generator for this pool's workers when given.
    generator: Generator | None = None


@dataclass(frozen=True)
class QueueSpec:
    name: str
    namespace: str
    uid: str
    image: ImageSpec
    queues: tuple[str, ...]
    pools: tuple[PoolSpec, ...]
    redis: RedisSpec
    beat: BeatSpec
    flower: FlowerSpec
    worker: WorkerSpec
    metrics: MetricsSpec
    autoscaling: AutoscalingSpec
    generation: int = 0
    #: Pull Secrets of every child pod (spec.imagePullSecrets, plus the operator's defaults).
    image_pull_secrets: tuple[str, ...] = ()
    #: The operator-wide registry (chart global.imageRegistry) the BookGen image is pulled from; "" = as written.
    image_registry: str = ""
    #: The registry of the managed Redis's image (chart redis.imageRegistry): only when asked, since a
    #: mirror of our image need not mirror Docker Hub's redis; "" = as written.
    redis_image_registry: str = ""
    #: env/envFrom of every BookGen process of the queue (spec.env, spec.envFrom).
    environment: Environment = field(default_factory=lambda: Environment())
    #: Where finished books go (spec.exports).
    exports: ExportsSpec = field(default_factory=lambda: ExportsSpec())
    #: Volumes and mounts of every BookGen process of the queue (spec.volumes, spec.volumeMounts).
    volumes: Volumes = field(default_factory=Volumes)
    #: spec.podTemplate: every BookGen pod (workers, beat, Flower); components' templates go over it.
    pod_template: PodTemplate = field(default_factory=PodTemplate)
    #: spec.generator: the text generator of every worker (None: the worker's own default, offline).
    generator: Generator | None = None

    @property
    def redis_secret_name(self) -> str:
        return self.redis.password_secret_name or f"{self.name}-redis"

    @property
    def redis_secret_generated(self) -> bool:
        """True when the operator must create the Redis password Secret (create-if-absent)."""
        return self.redis.managed and not self.redis.password_secret_name

    @property
    def flower_secret_name(self) -> str:
        return self.flower.auth_secret_name or f"{self.name}-flower-auth"

    @property
    def flower_secret_generated(self) -> bool:
        return self.flower.enabled and not self.flower.auth_secret_name

    def pool(self, name: str) -> PoolSpec:
        for pool in self.pools:
            if pool.name == name:
                return pool
        raise KeyError(name)
