"""Queue metrics: exact depth per queue (measure), the worker registry, the Prometheus endpoint."""

from .measure import QueueDepth, Snapshot, measure

__all__ = ["QueueDepth", "Snapshot", "measure"]
