"""Pieces every BookGen pod shares: the restricted security contexts, Redis connection env, volumes."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from bookgen_operator.core.objects import JSON
from bookgen_operator.core.resources.images import pull_secrets
from bookgen_operator.core.resources.labels import APP_UID, REDIS_PORT, labels, metadata, redis_name, selector
from bookgen_operator.core.spec import QueueSpec
from bookgen_operator.core.spec.model import Environment


def pod_security_context(uid: int = APP_UID) -> JSON:
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context(uid: int = APP_UID) -> JSON:
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def tmp_volume(size: str = "256Mi") -> JSON:
    """The root filesystem is read-only; /tmp holds the heartbeat file, beat's schedule, scratch."""
    return {"name": "tmp", "emptyDir": {"sizeLimit": size}}


TMP_MOUNT = MappingProxyType({"name": "tmp", "mountPath": "/tmp"})


def redis_env(spec: QueueSpec) -> list[JSON]:
    """How a BookGen process finds Redis: host/port (managed) or URL (external); the password always
    comes from the Secret, never from the manifest (bookgen_worker.config.redis_url_from_env)."""
    if spec.redis.managed:
        env: list[JSON] = [
            {"name": "REDIS_HOST", "value": redis_name(spec)},
            {"name": "REDIS_PORT", "value": str(REDIS_PORT)},
        ]
    else:
        env = [{"name": "REDIS_URL", "value": spec.redis.url}]
    env.append(
        {
            "name": "REDIS_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": spec.redis_secret_name, "key": spec.redis.password_secret_key}},
        }
    )
    return env


def app_env(spec: QueueSpec) -> list[JSON]:
    """Settings every BookGen process (worker, beat, Flower) reads from the environment."""
    w = spec.worker
    return [
        *redis_env(spec),
        {"name": "BOOKGEN_SOFT_TIME_LIMIT", "value": str(w.soft_time_limit)},
        {"name": "BOOKGEN_TIME_LIMIT", "value": str(w.time_limit)},
        {"name": "BOOKGEN_VISIBILITY_TIMEOUT", "value": str(w.visibility_timeout)},
        {"name": "BOOKGEN_PREFETCH_MULTIPLIER", "value": str(w.prefetch_multiplier)},
        {"name": "BOOKGEN_MAX_TASKS_PER_CHILD", "value": str(w.max_tasks_per_child)},
        {"name": "HOME", "value": "/tmp"},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
        {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
    ]


#: The pause process is PID 1 of the pod, so our processes are not. PID 1 of a namespace ignores every
#: signal it has no handler for, and Python (Celery, Flower, kopf) installs its handlers seconds after
#: it starts: a pod deleted in its first seconds (a quick scale-in, a rollout, its namespace deleted)
#: ignored the kubelet's SIGTERM and lived out its whole grace period, an hour for workers (seen on the
#: real node). Not PID 1, a starting process dies of SIGTERM at once; once Celery's handler is in, the
#: kubelet's SIGTERM (sent to the container's own process, not to the pod's PID 1) is a warm shutdown.
SIGNALS_REACH_STARTING_PROCESSES: Mapping[str, bool] = MappingProxyType({"shareProcessNamespace": True})


def add_user_environment(container: JSON, environment: Environment) -> JSON:
    """The user's env after ours (spec/environment.py refuses a name of ours) and their envFrom,
    which Kubernetes lets any explicit env entry win over. Nothing is added when there is none, so a
    queue without it keeps the exact manifest it had."""
    if environment.env:
        container["env"] = [*container.get("env", []), *(dict(e) for e in environment.env)]
    if environment.env_from:
        container["envFrom"] = [dict(e) for e in environment.env_from]
    return container


def pod_env() -> list[JSON]:
    return [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    ]


def single_pod_deployment(spec: QueueSpec, name: str, component: str, container: JSON,
                          **pod_fields: object) -> JSON:
    """One restricted pod with a 64Mi /tmp and no API token: beat and Flower. `pod_fields` go into the
    pod spec, `strategy` (if given) into the Deployment spec."""
    strategy = pod_fields.pop("strategy", None)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(spec, name, component),
        "spec": {
            "replicas": 1,
            "revisionHistoryLimit": 3,
            **({"strategy": strategy} if strategy else {}),
            "selector": {"matchLabels": selector(spec, component)},
            "template": {
                "metadata": {"labels": labels(spec, component)},
                "spec": {
                    "automountServiceAccountToken": False,
                    **SIGNALS_REACH_STARTING_PROCESSES,
                    **pull_secrets(spec),
                    "enableServiceLinks": False,
                    "securityContext": pod_security_context(),
                    **pod_fields,
                    "containers": [container],
                    "volumes": [tmp_volume("64Mi")],
                },
            },
        },
    }
