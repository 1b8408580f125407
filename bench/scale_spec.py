"""The BookGenQueue the scale benches create N of: 4 pools at exactly one replica, external Redis, no beat or Flower."""

from __future__ import annotations

from typing import Any

POOLS = [
    {"name": "content", "queues": ["content_generation", "high_priority"], "concurrency": 2},
    {"name": "validation", "queues": ["validation"], "concurrency": 2},
    {"name": "export", "queues": ["export"], "concurrency": 1},
    {"name": "monitoring", "queues": ["monitoring"], "concurrency": 1},
]


def queue_spec(redis_port: int) -> dict[str, Any]:
    """min = max = 1 replica per pool, so nothing scales: what is measured is the cost of keeping watch."""
    return {
        "redis": {"mode": "external", "url": f"redis://127.0.0.1:{redis_port}/0",
                  "passwordSecretRef": {"name": "redis-pass", "key": "password"}},
        "beat": {"enabled": False}, "flower": {"enabled": False},
        "autoscaling": {"source": "redis", "pollIntervalSeconds": 1, "targetWaitSeconds": 0},
        "pools": [{**pool, "minReplicas": 1, "maxReplicas": 1} for pool in POOLS],
    }  # fmt: skip
