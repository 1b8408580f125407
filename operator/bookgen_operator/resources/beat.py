"""Celery beat: exactly one scheduler, or periodic tasks run twice. Hence one replica and the Recreate
strategy (a RollingUpdate would briefly run the old and the new beat side by side)."""

from __future__ import annotations

from typing import Any

from bookgen_operator.resources.common import (
    TMP_MOUNT,
    app_env,
    container_security_context,
    pod_env,
    pod_security_context,
    tmp_volume,
)
from bookgen_operator.resources.labels import beat_name, labels, metadata, selector
from bookgen_operator.spec import QueueSpec

COMPONENT = "beat"
SCHEDULE_FILE = "/tmp/celerybeat-schedule"


def beat_command() -> list[str]:
    # The schedule file lives in /tmp: the root filesystem is read-only.
    return ["celery", "-A", "bookgen_worker.app", "beat", "--schedule", SCHEDULE_FILE, "--pidfile="]


def build_beat_deployment(spec: QueueSpec) -> dict[str, Any]:
    container = {
        "name": "beat",
        "image": spec.image.ref,
        "imagePullPolicy": spec.image.pull_policy,
        "command": beat_command(),
        "env": [*app_env(spec), *pod_env()],
        "resources": {"requests": {"cpu": "10m", "memory": "96Mi"}, "limits": {"memory": "256Mi"}},
        "securityContext": container_security_context(),
        "volumeMounts": [TMP_MOUNT],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(spec, beat_name(spec), COMPONENT),
        "spec": {
            "replicas": 1,
            "revisionHistoryLimit": 3,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector(spec, COMPONENT)},
            "template": {
                "metadata": {"labels": labels(spec, COMPONENT)},
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": pod_security_context(),
                    "terminationGracePeriodSeconds": 30,
                    "containers": [container],
                    "volumes": [tmp_volume("64Mi")],
                },
            },
        },
    }
