"""One worker Deployment (and PodDisruptionBudget) per pool.

Replicas: the autoscaler is the only writer of a worker Deployment's `spec.replicas` once it exists
(docs/autoscaling.md). The manifest built here carries the *initial* count, `initial_replicas(spec, pool)`:
the pool's minReplicas (0 stays 0 — a scale-to-zero pool starts empty and the autoscaler wakes it when
demand reaches activationThreshold). The reconciler must therefore leave `spec.replicas` out of its
comparison and patches of an existing worker Deployment whenever `autoscaler_owns_replicas(spec)`;
the Deployment says so in the annotation `bookgen.io/replicas-owner`. With autoscaling disabled the
reconciler owns replicas and holds them at minReplicas.

Shutdown: the container runs celery as PID 1 (exec form), so SIGTERM reaches it and starts a warm
shutdown that lets running tasks finish. `terminationGracePeriodSeconds` covers the hard time limit
plus a margin, because a task may legitimately run until then.
"""

from __future__ import annotations

from bookgen_operator.core.objects import JSON
from bookgen_operator.core.resources.common import (
    SIGNALS_REACH_STARTING_PROCESSES,
    TMP_MOUNT,
    add_user_environment,
    app_env,
    container_security_context,
    pod_env,
    pod_security_context,
    tmp_volume,
)
from bookgen_operator.core.resources.exports import OUTPUT_DIR, output_mount, output_volume, s3_credentials, s3_env
from bookgen_operator.core.resources.generator import generator_env
from bookgen_operator.core.resources.images import child_image, pull_secrets
from bookgen_operator.core.resources.labels import (
    POOL_LABEL,
    REPLICAS_OWNER_ANNOTATION,
    labels,
    metadata,
    selector,
    worker_name,
)
from bookgen_operator.core.resources.pod_template import add_user_volumes, apply_pod_template
from bookgen_operator.core.spec import PoolSpec, QueueSpec

COMPONENT = "worker"
MONITORING_QUEUE = "monitoring"
HEARTBEAT_FILE = "/tmp/heartbeat"
#: Seconds beyond the hard time limit for the warm shutdown to finish acknowledging and exit.
SHUTDOWN_MARGIN = 30
HEARTBEAT_MAX_AGE = 60


def autoscaler_owns_replicas(spec: QueueSpec) -> bool:
    return spec.autoscaling.enabled


def initial_replicas(spec: QueueSpec, pool: PoolSpec) -> int:
    return pool.min_replicas


def serves_metrics(pool: PoolSpec) -> bool:
    return MONITORING_QUEUE in pool.queues


def metrics_pool(spec: QueueSpec) -> PoolSpec:
    """The pool whose workers serve /metrics (the first one consuming the monitoring queue; the CRD
    requires one)."""
    return next(p for p in spec.pools if serves_metrics(p))


def termination_grace_seconds(spec: QueueSpec) -> int:
    return spec.worker.time_limit + SHUTDOWN_MARGIN


def worker_command(pool: PoolSpec) -> list[str]:
    return [
        "celery",
        "-A",
        "bookgen_worker.app",
        "worker",
        "-Q",
        ",".join(pool.queues),
        "-c",
        str(pool.concurrency),
        "-P",
        pool.pool_type,
        "-n",
        f"{pool.name}@%h",
        "--without-gossip",
        "--without-mingle",
    ]


def _heartbeat_probe(period: int, failures: int, delay: int = 0) -> JSON:
    return {
        "exec": {
            "command": [
                "python",
                "-m",
                "bookgen_worker.heartbeat",
                "--check",
                HEARTBEAT_FILE,
                "--max-age",
                str(HEARTBEAT_MAX_AGE),
            ]
        },
        "initialDelaySeconds": delay,
        "periodSeconds": period,
        "timeoutSeconds": 10,
        "failureThreshold": failures,
    }


def build_worker_deployment(spec: QueueSpec, pool: PoolSpec) -> JSON:
    env = [
        *app_env(spec),
        *pod_env(),
        {"name": "BOOKGEN_POOL", "value": pool.name},
        {"name": "BOOKGEN_HEARTBEAT_FILE", "value": HEARTBEAT_FILE},
        {"name": "BOOKGEN_OUTPUT_DIR", "value": OUTPUT_DIR},
        *s3_env(spec, pool),
    ]
    credentials, credentials_mounts = s3_credentials(spec, pool)
    container: JSON = {
        "name": "worker",
        "image": child_image(spec, spec.image.ref),
        "imagePullPolicy": spec.image.pull_policy,
        "command": worker_command(pool),
        "env": env,
        "resources": {k: dict(v) for k, v in pool.resources.items() if v},
        "securityContext": container_security_context(),
        # Startup: up to 5 min for the first heartbeat; then a stale heartbeat (> 60 s) restarts the pod.
        "startupProbe": _heartbeat_probe(period=5, failures=60),
        "livenessProbe": _heartbeat_probe(period=20, failures=3),
        "readinessProbe": _heartbeat_probe(period=10, failures=2),
        "volumeMounts": [dict(TMP_MOUNT), output_mount(spec, pool), *credentials_mounts],
    }
    if serves_metrics(pool):
        env.append({"name": "BOOKGEN_METRICS_PORT", "value": str(spec.metrics.port)})
        container["ports"] = [{"name": "metrics", "containerPort": spec.metrics.port, "protocol": "TCP"}]
    else:
        env.append({"name": "BOOKGEN_METRICS_PORT", "value": "off"})
    # The pool's generator replaces the queue's; both are the operator's variables (spec/generator.py).
    env += generator_env(pool.generator if pool.generator is not None else spec.generator)
    # The queue's environment, then the pool's: a change of the pool's rolls only this Deployment.
    add_user_environment(container, spec.environment + pool.environment)
    meta = metadata(spec, worker_name(spec, pool), COMPONENT, pool)
    meta["annotations"] = {REPLICAS_OWNER_ANNOTATION: "autoscaler" if autoscaler_owns_replicas(spec) else "reconcile"}
    deployment: JSON = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": initial_replicas(spec, pool),
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": selector(spec, COMPONENT, pool)},
            # Never take a worker away before its replacement runs: tasks keep flowing during rollouts.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": labels(spec, COMPONENT, pool)},
                "spec": {
                    "automountServiceAccountToken": False,
                    **SIGNALS_REACH_STARTING_PROCESSES,
                    **pull_secrets(spec),
                    "enableServiceLinks": False,
                    "securityContext": pod_security_context(),
                    "terminationGracePeriodSeconds": termination_grace_seconds(spec),
                    # Spread a pool over nodes when possible, so one node loss takes few workers.
                    "topologySpreadConstraints": [
                        {
                            "maxSkew": 1,
                            "topologyKey": "kubernetes.io/hostname",
                            "whenUnsatisfiable": "ScheduleAnyway",
                            "labelSelector": {"matchLabels": selector(spec, COMPONENT, pool)},
                        }
                    ],
                    "containers": [container],
                    "volumes": [tmp_volume(), output_volume(spec, pool), *credentials],
                },
            },
        },
    }
    # The queue's volumes and template, then the pool's: a change of the pool's rolls only this Deployment.
    add_user_volumes(deployment, container, spec.volumes + pool.volumes)
    return apply_pod_template(deployment, spec.pod_template + pool.pod_template)


def build_worker_pdb(spec: QueueSpec, pool: PoolSpec) -> JSON:
    """Voluntary disruptions (node drains) take at most one worker of a pool at a time."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(spec, worker_name(spec, pool), COMPONENT, pool),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": selector(spec, COMPONENT, pool)},
            # A crash-looping pod must not block a drain.
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


__all__ = [
    "POOL_LABEL",
    "autoscaler_owns_replicas",
    "build_worker_deployment",
    "build_worker_pdb",
    "initial_replicas",
    "metrics_pool",
    "termination_grace_seconds",
    "worker_command",
]
