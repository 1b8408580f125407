"""Flower, the Celery web UI, behind basic auth whose user and password come from a Secret (keys
`username` and `password`; generated as `<cr>-flower-auth` by the kopf layer when none is named).
`python -m bookgen_worker.flower` refuses to start without credentials."""

from __future__ import annotations

from bookgen_operator.core.objects import JSON
from bookgen_operator.core.resources.common import (
    TMP_MOUNT,
    add_user_environment,
    app_env,
    container_security_context,
    single_pod_deployment,
)
from bookgen_operator.core.resources.images import child_image
from bookgen_operator.core.resources.labels import FLOWER_PORT, flower_name, metadata, selector
from bookgen_operator.core.resources.pod_template import add_user_volumes, apply_pod_template
from bookgen_operator.core.spec import QueueSpec

COMPONENT = "flower"


def _secret_env(name: str, secret: str, key: str) -> JSON:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def flower_command(spec: QueueSpec) -> list[str]:
    """bookgen_worker.flower reads the credentials from FLOWER_USER/FLOWER_PASSWORD (set from the
    Secret) and hands them to Flower through its environment, never its command line. Offline workers
    are forgotten after purgeOfflineWorkersSeconds (every scale-out names new ones)."""
    return [
        "python",
        "-m",
        "bookgen_worker.flower",
        "--port",
        str(FLOWER_PORT),
        "--max-tasks",
        str(spec.flower.max_tasks),
        *(["--purge-offline-workers", str(spec.flower.purge_offline_workers_seconds)]
          if spec.flower.purge_offline_workers_seconds else []),
        *(["--url-prefix", spec.flower.url_prefix] if spec.flower.url_prefix else []),
    ]


def build_flower_deployment(spec: QueueSpec) -> JSON:
    probe = {"tcpSocket": {"port": "http"}, "periodSeconds": 10, "timeoutSeconds": 3, "failureThreshold": 3}
    container = {
        "name": "flower",
        "image": child_image(spec, spec.image.ref),
        "imagePullPolicy": spec.image.pull_policy,
        "command": flower_command(spec),
        "env": [
            *app_env(spec),
            _secret_env("FLOWER_USER", spec.flower_secret_name, "username"),
            _secret_env("FLOWER_PASSWORD", spec.flower_secret_name, "password"),
        ],
        "ports": [{"name": "http", "containerPort": FLOWER_PORT, "protocol": "TCP"}],
        "readinessProbe": {**probe, "initialDelaySeconds": 5},
        "livenessProbe": {**probe, "initialDelaySeconds": 30},
        "resources": {k: dict(v) for k, v in spec.flower.resources.items() if v},
        "securityContext": container_security_context(),
        "volumeMounts": [dict(TMP_MOUNT)],
    }
    add_user_environment(container, spec.environment)
    deployment = single_pod_deployment(spec, flower_name(spec), COMPONENT, container)
    add_user_volumes(deployment, container, spec.volumes)
    return apply_pod_template(deployment, spec.pod_template + spec.flower.pod_template)


def build_flower_service(spec: QueueSpec) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(spec, flower_name(spec), COMPONENT),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(spec, COMPONENT),
            "ports": [{"name": "http", "port": FLOWER_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }
