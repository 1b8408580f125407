"""Celery beat: exactly one scheduler, or periodic tasks run twice. Hence one replica and the Recreate
strategy (a RollingUpdate would briefly run the old and the new beat side by side)."""

from __future__ import annotations

from bookgen_operator.core.objects import JSON
from bookgen_operator.core.resources.common import (
    TMP_MOUNT,
    add_user_environment,
    app_env,
    container_security_context,
    pod_env,
    single_pod_deployment,
)
from bookgen_operator.core.resources.images import child_image
from bookgen_operator.core.resources.labels import beat_name
from bookgen_operator.core.resources.pod_template import add_user_volumes, apply_pod_template
from bookgen_operator.core.spec import QueueSpec

COMPONENT = "beat"
SCHEDULE_FILE = "/tmp/celerybeat-schedule"


def beat_command() -> list[str]:
    # The schedule file lives in /tmp: the root filesystem is read-only.
    return ["celery", "-A", "bookgen_worker.app", "beat", "--schedule", SCHEDULE_FILE, "--pidfile="]


def build_beat_deployment(spec: QueueSpec) -> JSON:
    container = {
        "name": "beat",
        "image": child_image(spec, spec.image.ref),
        "imagePullPolicy": spec.image.pull_policy,
        "command": beat_command(),
        "env": [*app_env(spec), *pod_env()],
        "resources": {k: dict(v) for k, v in spec.beat.resources.items() if v},
        "securityContext": container_security_context(),
        "volumeMounts": [dict(TMP_MOUNT)],
    }
    add_user_environment(container, spec.environment)
    # Recreate and 30 s: see the module docstring; beat has nothing to finish.
    deployment = single_pod_deployment(spec, beat_name(spec), COMPONENT, container, strategy={"type": "Recreate"},
                                       terminationGracePeriodSeconds=30)
    add_user_volumes(deployment, container, spec.volumes)
    return apply_pod_template(deployment, spec.pod_template + spec.beat.pod_template)
