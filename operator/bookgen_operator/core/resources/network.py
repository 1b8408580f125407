"""Only this BookGenQueue's own pods, the operator, and the clients the user names in
`spec.redis.allowedClients` (the application that submits books) may talk to its Redis (plus the
password, defence in depth)."""

from __future__ import annotations

import copy
from types import MappingProxyType

from bookgen_operator.core.objects import JSON
from bookgen_operator.core.resources.labels import REDIS_PORT, instance_selector, metadata, redis_name, selector
from bookgen_operator.core.spec import QueueSpec

#: The labels the chart gives the operator's pod. The operator reads each queue's Redis (busy
#: workers for safe scale-in, queue depth with the Redis source), so the policy must admit it.
OPERATOR_POD_LABELS = MappingProxyType({"app.kubernetes.io/part-of": "bookgen",
                                        "app.kubernetes.io/component": "operator"})


def operator_peer(operator_namespace: str | None) -> JSON:
    """The operator's pod: in its own namespace when known (POD_NAMESPACE), else in any namespace."""
    namespaces = {"matchLabels": {"kubernetes.io/metadata.name": operator_namespace}} if operator_namespace else {}
    return {"namespaceSelector": namespaces, "podSelector": {"matchLabels": dict(OPERATOR_POD_LABELS)}}


def build_redis_network_policy(spec: QueueSpec, operator_namespace: str | None = None) -> JSON:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(spec, redis_name(spec), "redis"),
        "spec": {
            "podSelector": {"matchLabels": selector(spec, "redis")},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [{"podSelector": {"matchLabels": instance_selector(spec)}},
                             operator_peer(operator_namespace),
                             *copy.deepcopy(spec.redis.allowed_clients)],
                    "ports": [{"protocol": "TCP", "port": REDIS_PORT}],
                }
            ],
        },
    }
