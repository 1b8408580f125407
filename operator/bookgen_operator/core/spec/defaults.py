"""The defaults of crds/bookgenqueue.yaml that are more than a scalar, in Python.

BookGen's original topology comes from bookgen_worker.queues (its single source); tests/unit/test_spec.py
checks that the CRD's `default:` values say the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from bookgen_worker.queues import DEFAULT_POOLS as _SEED_POOLS
from bookgen_worker.queues import QUEUES

from bookgen_operator.core.objects import JSON

DEFAULT_QUEUES: tuple[str, ...] = QUEUES

#: The CRD's default for spec.pools, as written in the CRD (item defaults fill in the rest).
DEFAULT_POOLS: list[JSON] = [
    {"name": p.name, "queues": list(p.queues), "concurrency": p.concurrency} for p in _SEED_POOLS
]

POOL_REQUESTS: Mapping[str, str] = MappingProxyType({"cpu": "100m", "memory": "256Mi"})
POOL_LIMITS: Mapping[str, str] = MappingProxyType({"memory": "1Gi"})
REDIS_REQUESTS: Mapping[str, str] = MappingProxyType({"cpu": "50m", "memory": "64Mi"})
REDIS_LIMITS: Mapping[str, str] = MappingProxyType({"memory": "256Mi"})
BEAT_REQUESTS: Mapping[str, str] = MappingProxyType({"cpu": "10m", "memory": "96Mi"})
BEAT_LIMITS: Mapping[str, str] = MappingProxyType({"memory": "256Mi"})
FLOWER_REQUESTS: Mapping[str, str] = MappingProxyType({"cpu": "50m", "memory": "128Mi"})
FLOWER_LIMITS: Mapping[str, str] = MappingProxyType({"memory": "512Mi"})
