"""Which metric source a BookGenQueue uses: Prometheus when a URL is configured, else the exporter's
endpoint; Redis directly when `autoscaling.source: redis` says so."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Literal

from bookgen_operator.core.autoscaler.source import MetricsSource

SourceKind = Literal["prometheus", "endpoint", "redis"]
KINDS: tuple[SourceKind, ...] = ("prometheus", "endpoint", "redis")


def source_kind(source: str, prometheus_url: str) -> SourceKind:
    if source == "auto":
        return "prometheus" if prometheus_url else "endpoint"
    for kind in KINDS:
        if source == kind:
            if kind == "prometheus" and not prometheus_url:
                raise ValueError("autoscaling.source prometheus needs autoscaling.prometheusUrl")
            return kind
    raise ValueError(f"unknown autoscaling source {source!r} (use auto, prometheus, endpoint or redis)")


def make_source(source: str, *, prometheus_url: str = "", labels: Mapping[str, str] | None = None,
                endpoint_url: str = "", redis: Callable[[], MetricsSource] | None = None) -> MetricsSource:
    """`redis` is a factory returning a RedisSource (only called when that source is chosen)."""
    kind = source_kind(source, prometheus_url)
    if kind == "prometheus":
        from bookgen_operator.sources.prometheus import PrometheusSource

        return PrometheusSource(prometheus_url, labels)
    if kind == "endpoint":
        from bookgen_operator.sources.endpoint import EndpointSource

        if not endpoint_url:
            raise ValueError("the endpoint source needs the exporter's /metrics URL")
        return EndpointSource(endpoint_url)
    if redis is None:
        raise ValueError("the redis source needs a Redis connection")
    result: MetricsSource = redis()
    return result
