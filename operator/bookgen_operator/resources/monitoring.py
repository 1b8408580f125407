"""Prometheus Operator objects (monitoring.coreos.com/v1): a ServiceMonitor for the metrics Service and
a PrometheusRule with the BookGen alerts. Built here; the kopf layer decides whether to create them
(`monitoring_objects(spec, crds_present)` applies spec.metrics.*.enabled: auto | always | never)."""

from __future__ import annotations

from typing import Any

from bookgen_operator.resources.labels import metadata, selector
from bookgen_operator.spec import QueueSpec, Toggle

COMPONENT = "metrics"
API_VERSION = "monitoring.coreos.com/v1"


def build_service_monitor(spec: QueueSpec) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "ServiceMonitor",
        "metadata": metadata(spec, spec.name, COMPONENT),
        "spec": {
            "selector": {"matchLabels": selector(spec, COMPONENT)},
            "namespaceSelector": {"matchNames": [spec.namespace]},
            "endpoints": [{"port": "metrics", "path": "/metrics", "interval": "15s", "scrapeTimeout": "10s"}],
        },
    }


def alert_rules(spec: QueueSpec) -> list[dict[str, Any]]:
    """The alerts, scoped to this BookGenQueue's namespace and metrics Service."""
    scope = f'namespace="{spec.namespace}",service="{spec.name}-metrics"'
    return [
        {
            "alert": "BookGenQueueBacklogGrowing",
            "expr": f"max by (queue) (bookgen_queue_oldest_pending_age_seconds{{{scope}}}) > 900",
            "for": "10m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "BookGen queue {{ $labels.queue }} has had a task waiting for over 15 minutes",
                "description": "Workers are not keeping up; check the pool's maxReplicas and worker health.",
            },
        },
        {
            "alert": "BookGenDeadLetters",
            "expr": f"max(bookgen_dead_letter_queue_size{{{scope}}}) > 0",
            "for": "15m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "{{ $value }} BookGen tasks failed permanently and wait in the dead-letter queue",
                "description": "Inspect them with `bookgen dlq list`; retry or purge.",
            },
        },
        {
            "alert": "BookGenRedisDown",
            "expr": f"max(bookgen_redis_up{{{scope}}}) == 0",
            "for": "2m",
            "labels": {"severity": "critical"},
            "annotations": {"summary": "The BookGen exporter cannot reach Redis; no task is being delivered"},
        },
        {
            "alert": "BookGenMetricsMissing",
            "expr": f"absent(bookgen_last_measurement_timestamp_seconds{{{scope}}}) or time() - max(bookgen_last_measurement_timestamp_seconds{{{scope}}}) > 120",  # noqa: E501
            "for": "5m",
            "labels": {"severity": "warning"},
            "annotations": {"summary": "No fresh BookGen queue measurements; autoscaling falls back to its defaults"},
        },
        {
            "alert": "BookGenTaskFailureRateHigh",
            "expr": (
                f"sum by (queue) (rate(bookgen_tasks_failed_total{{{scope}}}[10m])) "
                f"/ clamp_min(sum by (queue) (rate(bookgen_tasks_succeeded_total{{{scope}}}[10m])"
                f" + rate(bookgen_tasks_failed_total{{{scope}}}[10m])), 1e-9) > 0.1"
            ),
            "for": "10m",
            "labels": {"severity": "warning"},
            "annotations": {"summary": "Over 10% of BookGen tasks on {{ $labels.queue }} fail"},
        },
    ]


def build_prometheus_rule(spec: QueueSpec) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "PrometheusRule",
        "metadata": metadata(spec, spec.name, COMPONENT),
        "spec": {"groups": [{"name": f"bookgen.{spec.namespace}.{spec.name}", "rules": alert_rules(spec)}]},
    }


def wanted(toggle: Toggle, crds_present: bool) -> bool:
    return toggle == "always" or (toggle == "auto" and crds_present)


def monitoring_objects(spec: QueueSpec, crds_present: bool) -> list[dict[str, Any]]:
    """The monitoring objects to create. `always` with the CRDs absent still returns them: the kopf
    layer then reports the failed create in status instead of silently skipping what was asked for."""
    out = []
    if wanted(spec.metrics.service_monitor, crds_present):
        out.append(build_service_monitor(spec))
    if wanted(spec.metrics.prometheus_rule, crds_present):
        out.append(build_prometheus_rule(spec))
    return out
