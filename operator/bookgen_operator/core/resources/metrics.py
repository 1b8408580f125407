"""The metrics Service: the queue exporter served by the workers of the pool that consumes the
`monitoring` queue (one endpoint per such pod; every pod reports the same Redis-wide figures)."""

from __future__ import annotations

from bookgen_operator.core.objects import JSON
from bookgen_operator.core.resources.labels import metadata, metrics_name, selector
from bookgen_operator.core.resources.workers import COMPONENT as WORKER
from bookgen_operator.core.resources.workers import metrics_pool
from bookgen_operator.core.spec import QueueSpec

COMPONENT = "metrics"


def build_metrics_service(spec: QueueSpec) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(spec, metrics_name(spec), COMPONENT),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(spec, WORKER, metrics_pool(spec)),
            "ports": [{"name": "metrics", "port": spec.metrics.port, "targetPort": "metrics", "protocol": "TCP"}],
        },
    }


def metrics_url(spec: QueueSpec) -> str:
    """Where the operator's endpoint source reads /metrics from inside the cluster."""
    return f"http://{metrics_name(spec)}.{spec.namespace}.svc:{spec.metrics.port}/metrics"
