"""Only this BookGenQueue's own pods may talk to its Redis (plus the password, defence in depth)."""

from __future__ import annotations

from typing import Any

from bookgen_operator.resources.labels import REDIS_PORT, instance_selector, metadata, redis_name, selector
from bookgen_operator.spec import QueueSpec


def build_redis_network_policy(spec: QueueSpec) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(spec, redis_name(spec), "redis"),
        "spec": {
            "podSelector": {"matchLabels": selector(spec, "redis")},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [{"podSelector": {"matchLabels": instance_selector(spec)}}],
                    "ports": [{"protocol": "TCP", "port": REDIS_PORT}],
                }
            ],
        },
    }
