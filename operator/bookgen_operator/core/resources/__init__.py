"""Pure builders: QueueSpec -> Kubernetes manifests (dicts), without owner references (kopf adopts them).

`desired_objects(spec)` is every child the reconciler keeps in place, in a sensible creation order
(Redis before the workers that need it). Not included, by design:
- nothing is missing for the exports claim (resources.exports): it is here, made without an owner
  reference so that it outlives the queue,
- generated Secrets (random values; created once by the kopf layer: see resources.secrets),
- ServiceMonitor/PrometheusRule (only when the Prometheus Operator CRDs exist: see
  resources.monitoring.monitoring_objects).
Worker Deployments carry initial replicas only; see resources.workers for who owns replicas later.
"""

from __future__ import annotations

from bookgen_operator.core.objects import JSON
from bookgen_operator.core.resources.beat import build_beat_deployment
from bookgen_operator.core.resources.exports import build_exports_claim
from bookgen_operator.core.resources.flower import build_flower_deployment, build_flower_service
from bookgen_operator.core.resources.metrics import build_metrics_service
from bookgen_operator.core.resources.monitoring import build_prometheus_rule, build_service_monitor, monitoring_objects
from bookgen_operator.core.resources.network import build_redis_network_policy
from bookgen_operator.core.resources.redis import (
    build_redis_headless_service,
    build_redis_service,
    build_redis_statefulset,
)
from bookgen_operator.core.resources.secrets import build_flower_secret, build_redis_secret, generated_secrets
from bookgen_operator.core.resources.workers import (
    autoscaler_owns_replicas,
    build_worker_deployment,
    build_worker_pdb,
    initial_replicas,
)
from bookgen_operator.core.spec import QueueSpec


def desired_objects(spec: QueueSpec, operator_namespace: str | None = None) -> list[JSON]:
    """`operator_namespace`: where the operator runs, so only it (besides the queue's own pods) may
    reach Redis; None admits the operator's pods from any namespace."""
    objects: list[JSON] = []
    if spec.redis.managed:
        objects += [
            build_redis_service(spec),
            build_redis_headless_service(spec),
            build_redis_network_policy(spec, operator_namespace),
            build_redis_statefulset(spec),
        ]
    claim = build_exports_claim(spec)
    if claim is not None:  # before the pods that mount it
        objects.append(claim)
    for pool in spec.pools:
        objects += [build_worker_deployment(spec, pool), build_worker_pdb(spec, pool)]
    objects.append(build_metrics_service(spec))
    if spec.beat.enabled:
        objects.append(build_beat_deployment(spec))
    if spec.flower.enabled:
        objects += [build_flower_deployment(spec), build_flower_service(spec)]
    return objects


def pod_specs(objects: list[JSON]) -> list[tuple[str, JSON]]:
    """(kind/name, pod spec) for every workload among `objects`."""
    return [
        (f"{o['kind']}/{o['metadata']['name']}", o["spec"]["template"]["spec"])
        for o in objects
        if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job")
    ]


__all__ = [
    "autoscaler_owns_replicas",
    "build_beat_deployment",
    "build_exports_claim",
    "build_flower_deployment",
    "build_flower_secret",
    "build_flower_service",
    "build_metrics_service",
    "build_prometheus_rule",
    "build_redis_headless_service",
    "build_redis_network_policy",
    "build_redis_secret",
    "build_redis_service",
    "build_redis_statefulset",
    "build_service_monitor",
    "build_worker_deployment",
    "build_worker_pdb",
    "desired_objects",
    "generated_secrets",
    "initial_replicas",
    "monitoring_objects",
    "pod_specs",
]
