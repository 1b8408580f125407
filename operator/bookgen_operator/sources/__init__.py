"""Metric sources of the autoscaler (Prometheus, the exporter's /metrics, Redis directly): the I/O behind
the core's MetricsSource interface, shared by the operator and `bookgen up`."""
