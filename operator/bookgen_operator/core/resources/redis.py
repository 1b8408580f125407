"""The managed Redis: a one-replica StatefulSet with append-only persistence, its Services and the
NetworkPolicy is in network.py. Only built in `redis.mode: managed`.

The password reaches redis-server through the environment: `--requirepass $(REDIS_PASSWORD)` is
expanded by the kubelet from the Secret, so it never appears in the manifest. Probes authenticate
with REDISCLI_AUTH (also from the environment) rather than `-a`, which would print a warning and put
the password on a command line of its own.
"""

from __future__ import annotations

from bookgen_operator.core.objects import JSON
from bookgen_operator.core.resources.common import (
    TMP_MOUNT,
    container_security_context,
    pod_security_context,
    tmp_volume,
)
from bookgen_operator.core.resources.images import pull_secrets, redis_image
from bookgen_operator.core.resources.labels import (
    REDIS_PORT,
    REDIS_UID,
    labels,
    metadata,
    redis_headless_name,
    redis_name,
    selector,
)
from bookgen_operator.core.resources.pod_template import apply_pod_template
from bookgen_operator.core.resources.redis_memory import memory_args
from bookgen_operator.core.spec import QueueSpec

COMPONENT = "redis"
_PING = 'REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli -h 127.0.0.1 -p 6379 ping | grep -q PONG'


def build_redis_statefulset(spec: QueueSpec) -> JSON:
    r = spec.redis
    container: JSON = {
        "name": "redis",
        "image": redis_image(spec),
        "imagePullPolicy": "IfNotPresent",
        "command": ["redis-server"],
        "args": [
            "--port",
            str(REDIS_PORT),
            "--requirepass",
            "$(REDIS_PASSWORD)",
            "--appendonly",
            "yes",  # also without a volume: an emptyDir outlives container restarts
            "--appendfsync",
            "everysec",
            "--dir",
            "/data",
            "--protected-mode",
            "no",  # reachable through the Service; access is by password and NetworkPolicy
            # noeviction always, maxmemory below the container's limit: see redis_memory.py.
            *memory_args(r.resources.get("limits", {}), r.maxmemory),
        ],
        "env": [
            {
                "name": "REDIS_PASSWORD",
                "valueFrom": {"secretKeyRef": {"name": spec.redis_secret_name, "key": r.password_secret_key}},
            }
        ],
        "ports": [{"name": "redis", "containerPort": REDIS_PORT, "protocol": "TCP"}],
        "readinessProbe": {
            "exec": {"command": ["sh", "-c", _PING]},
            "initialDelaySeconds": 2,
            "periodSeconds": 5,
            "timeoutSeconds": 3,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "exec": {"command": ["sh", "-c", _PING]},
            "initialDelaySeconds": 15,
            "periodSeconds": 10,
            "timeoutSeconds": 5,
            "failureThreshold": 6,
        },
        "resources": {k: dict(v) for k, v in r.resources.items() if v},
        "securityContext": container_security_context(REDIS_UID),
        "volumeMounts": [{"name": "data", "mountPath": "/data"}, dict(TMP_MOUNT)],
    }
    volumes: list[JSON] = [tmp_volume("64Mi")]
    sts_spec: JSON = {
        "replicas": 1,
        "serviceName": redis_headless_name(spec),
        "selector": {"matchLabels": selector(spec, COMPONENT)},
        "podManagementPolicy": "OrderedReady",
        "updateStrategy": {"type": "RollingUpdate"},
        "template": {
            "metadata": {"labels": labels(spec, COMPONENT)},
            "spec": {
                "automountServiceAccountToken": False,
                **pull_secrets(spec),
                "enableServiceLinks": False,
                "securityContext": pod_security_context(REDIS_UID),
                "terminationGracePeriodSeconds": 30,
                "containers": [container],
                "volumes": volumes,
            },
        },
    }
    if r.persistence.enabled:
        claim: JSON = {
            "metadata": {"name": "data", "labels": selector(spec, COMPONENT)},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": r.persistence.size}},
            },
        }
        if r.persistence.storage_class:
            claim["spec"]["storageClassName"] = r.persistence.storage_class
        sts_spec["volumeClaimTemplates"] = [claim]
        # Keep the data when the BookGenQueue is deleted or scaled: losing queued tasks is worse.
        sts_spec["persistentVolumeClaimRetentionPolicy"] = {"whenDeleted": "Retain", "whenScaled": "Retain"}
    else:
        volumes.append({"name": "data", "emptyDir": {}})
    statefulset = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": metadata(spec, redis_name(spec), COMPONENT),
        "spec": sts_spec,
    }
    # Only Redis's own template: spec.podTemplate is for BookGen's pods (identity, volumes, placement).
    return apply_pod_template(statefulset, r.pod_template)


def build_redis_service(spec: QueueSpec) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(spec, redis_name(spec), COMPONENT),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(spec, COMPONENT),
            "ports": [{"name": "redis", "port": REDIS_PORT, "targetPort": "redis", "protocol": "TCP"}],
        },
    }


def build_redis_headless_service(spec: QueueSpec) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(spec, redis_headless_name(spec), COMPONENT),
        "spec": {
            "clusterIP": "None",
            "selector": selector(spec, COMPONENT),
            "ports": [{"name": "redis", "port": REDIS_PORT, "targetPort": "redis", "protocol": "TCP"}],
        },
    }
