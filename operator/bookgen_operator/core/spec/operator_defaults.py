"""Operator-wide defaults for every BookGenQueue, set once by the Helm chart (environment variables).

- BOOKGEN_IMAGE_REGISTRY (chart `global.imageRegistry`): the registry the BookGen image of every child
  (workers, beat, Flower) is pulled from (resources.images);
- BOOKGEN_REDIS_IMAGE_REGISTRY (chart `redis.imageRegistry`): the registry of the managed Redis's image,
  set on its own: mirroring our image does not move Redis unless asked;
- BOOKGEN_IMAGE_PULL_SECRETS (chart `global.imagePullSecrets`, comma-separated names): pull Secrets
  added to every child pod, after the queue's own `spec.imagePullSecrets`; each must exist in the
  queue's namespace;
- BOOKGEN_MONITOR_LABELS (chart `monitoring.labels`, `k=v,k2=v2`): labels of the per-queue
  ServiceMonitor and PrometheusRule when the spec sets none (`spec.metrics.monitorLabels` wins);
- BOOKGEN_ALERTS (chart `alerts`, JSON): the alert tuning of every queue's PrometheusRule, under the
  queue's own `spec.metrics.alerts` field by field (AlertSettings.over);
- BOOKGEN_DEFAULT_IMAGE (chart `image.*`, `repository:tag[@sha256:...]`): the operator's own image, which
  every queue that does not pin `spec.image` runs, so upgrading the operator upgrades those queues.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

from bookgen_operator.core.spec import SpecError, label_map
from bookgen_operator.core.spec.alert_model import AlertSettings
from bookgen_operator.core.spec.alerts import alerts_from_env
from bookgen_operator.core.spec.model import QueueSpec


@dataclasses.dataclass(frozen=True)
class OperatorDefaults:
    image_registry: str = ""
    redis_image_registry: str = ""
    image_pull_secrets: tuple[str, ...] = ()
    monitor_labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    alerts: AlertSettings = dataclasses.field(default_factory=AlertSettings)
    #: The operator's own image: (repository, tag, digest); None = the built-in default (ImageSpec).
    image: tuple[str, str, str] | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> OperatorDefaults:
        """Read the defaults; a malformed value raises SpecError naming the variable."""
        pairs = [p for p in env.get("BOOKGEN_MONITOR_LABELS", "").split(",") if p.strip()]
        if any("=" not in p for p in pairs):
            raise SpecError(f"BOOKGEN_MONITOR_LABELS must be k=v pairs separated by commas (got {pairs})")
        labels = label_map(dict(p.strip().split("=", 1) for p in pairs), "BOOKGEN_MONITOR_LABELS")
        secrets = tuple(n.strip() for n in env.get("BOOKGEN_IMAGE_PULL_SECRETS", "").split(",") if n.strip())
        return cls(env.get("BOOKGEN_IMAGE_REGISTRY", "").strip().rstrip("/"),
                   env.get("BOOKGEN_REDIS_IMAGE_REGISTRY", "").strip().rstrip("/"), secrets, labels,
                   alerts_from_env(env), image_parts(env.get("BOOKGEN_DEFAULT_IMAGE", "").strip()))

    def apply(self, spec: QueueSpec) -> QueueSpec:
        secrets = tuple(dict.fromkeys((*spec.image_pull_secrets, *self.image_pull_secrets)))
        metrics = spec.metrics
        if not metrics.monitor_labels and self.monitor_labels:
            metrics = dataclasses.replace(metrics, monitor_labels=dict(self.monitor_labels))
        metrics = dataclasses.replace(metrics, alerts=metrics.alerts.over(self.alerts))
        image = spec.image
        if not image.pinned and self.image is not None:
            repository, tag, digest = self.image
            image = dataclasses.replace(image, repository=repository, tag=tag, digest=digest)
        return dataclasses.replace(spec, image=image, image_registry=self.image_registry,
                                   redis_image_registry=self.redis_image_registry,
                                   image_pull_secrets=secrets, metrics=metrics)


_DIGEST = re.compile(r"sha256:[a-f0-9]{64}")


def image_parts(ref: str) -> tuple[str, str, str] | None:
    """(repository, tag, digest) of `repository:tag[@sha256:...]`; None for ""; SpecError otherwise."""
    if not ref:
        return None
    name, _, digest = ref.partition("@")
    repository, colon, tag = name.rpartition(":")
    if not colon or "/" in tag or not repository or not tag or (digest and not _DIGEST.fullmatch(digest)):
        raise SpecError(f"BOOKGEN_DEFAULT_IMAGE must be repository:tag, optionally @sha256:<64 hex> (got {ref!r})")
    return repository, tag, digest

