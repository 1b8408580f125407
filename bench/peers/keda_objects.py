"""The KEDA objects bench/real_autoscale.py puts beside a BookGenQueue's content pool: a
TriggerAuthentication with the queue's Redis password (from the queue's own Secret) and a ScaledObject
on the pool's Deployment, tuned like for like with our autoscaler or at KEDA's defaults.

Tuned ("like for like"): what our autoscaler counts, pending in **every** priority list of every queue
the pool consumes plus the tasks in flight, added by a `scalingModifiers` formula. Each list is one
`redis` trigger (KEDA's list scaler, LLEN); in flight is our metrics endpoint's
`bookgen_queue_in_flight{queue=...}` through a `metrics-api` trigger in Prometheus text format (KEDA has
no Redis trigger for kombu's `unacked` hash). Our polling (1 s), scale-down window (30 s, and as
cooldown for the last replica) and the same Deployment, so the same grace; scale-up uncapped (1000 %
per 15 s). The HPA itself syncs every 15 s: a kube-controller-manager flag, not per HPA.

Defaults: KEDA's documented Redis list example, one `redis` trigger on the base list with
`listLength: 5`, KEDA's pollingInterval (30 s), cooldownPeriod (300 s) and the HPA's default behaviour
(scale-down stabilisation 300 s); only maxReplicaCount is set, to the same cap as ours.
"""

from __future__ import annotations

from typing import Any

from bookgen_worker.queues import priority_list_keys

SCALED_OBJECT = "content"
AUTH = "bench-redis"


def trigger_authentication(namespace: str, queue: str) -> dict[str, Any]:
    return {
        "apiVersion": "keda.sh/v1alpha1", "kind": "TriggerAuthentication",
        "metadata": {"name": AUTH, "namespace": namespace},
        "spec": {"secretTargetRef": [{"parameter": "password", "name": f"{queue}-redis", "key": "password"}]},
    }  # fmt: skip


def _redis_trigger(name: str, address: str, list_name: str, list_length: str) -> dict[str, Any]:
    return {"type": "redis", "name": name, "authenticationRef": {"name": AUTH},
            "metadata": {"address": address, "listName": list_name, "listLength": list_length}}


def _identifier(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text)


def scaled_object(namespace: str, queue: str, *, queues: list[str], steps: tuple[int, ...], separator: str,
                  tuned: bool, list_length: float, max_replicas: int) -> dict[str, Any]:
    address = f"{queue}-redis.{namespace}.svc.cluster.local:6379"
    spec: dict[str, Any] = {"scaleTargetRef": {"name": f"{queue}-worker-content"}, "minReplicaCount": 0,
                            "maxReplicaCount": max_replicas}
    if not tuned:
        spec["triggers"] = [_redis_trigger("base", address, queues[0], "5")]
    else:
        triggers = [_redis_trigger(f"l{i}", address, key, "1")
                    for i, key in enumerate(k for q in queues for k in priority_list_keys(q, steps, separator))]
        metrics = f"http://{queue}-metrics.{namespace}.svc.cluster.local:9808/metrics"
        triggers += [{"type": "metrics-api", "name": f"inflight_{_identifier(q)}", "metadata": {
            "url": metrics, "format": "prometheus", "valueLocation": f'bookgen_queue_in_flight{{queue="{q}"}}',
            "targetValue": "1"}} for q in queues]
        spec.update({
            "pollingInterval": 1, "cooldownPeriod": 30, "triggers": triggers,
            "advanced": {
                "horizontalPodAutoscalerConfig": {"behavior": {
                    "scaleDown": {"stabilizationWindowSeconds": 30},
                    "scaleUp": {"stabilizationWindowSeconds": 0,
                                "policies": [{"type": "Percent", "value": 1000, "periodSeconds": 15}]}}},
                "scalingModifiers": {"formula": " + ".join(t["name"] for t in triggers), "target": f"{list_length:g}",
                                     "activationTarget": "0", "metricType": "AverageValue"},
            },
        })  # fmt: skip
    return {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
            "metadata": {"name": SCALED_OBJECT, "namespace": namespace}, "spec": spec}
