"""Sources of per-pool queue observations: Prometheus, the exporter's /metrics, or Redis directly."""

from bookgen_operator.metrics_sources.base import MetricsSource, PoolMetrics, PoolQuery

__all__ = ["MetricsSource", "PoolMetrics", "PoolQuery"]
