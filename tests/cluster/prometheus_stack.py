"""The Prometheus Operator and the Prometheus it runs, installed on the real node the way
kube-prometheus-stack's defaults are (tests/cluster/prometheus_operator.py has the manifests), and that
Prometheus's HTTP API reached from inside the cluster's network namespace.

Shared by tests/cluster/test_real_node_prometheus.py and bench/real_autoscale.py (ours with
`source: prometheus`)."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client

from tests.cluster import prometheus_operator as PO
from tests.cluster import secret_scan
from tests.cluster.conftest import Cluster, kubectl, wait_established
from tests.cluster.reach import service_get
from tests.support.prometheus import PrometheusAPI, PromQLError
from tests.support.waiting import wait_for

#: The chart's values that label its monitoring objects for that Prometheus (the chart README's
#: kube-prometheus-stack recipe).
CHART_VALUES = (
    f"monitoring.labels.release={PO.RELEASE}",
    "prometheusRule.enabled=true", f"prometheusRule.additionalLabels.release={PO.RELEASE}",
    "metrics.serviceMonitor.enabled=true", f"metrics.serviceMonitor.additionalLabels.release={PO.RELEASE}",
)  # fmt: skip


class InClusterPrometheus(PrometheusAPI):
    """The Prometheus HTTP API through its governing Service, from inside the cluster's namespace: the
    same calls whichever pod answers (a test deletes it and makes it again)."""

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(PO.URL)
        self.cluster = cluster

    def _get(self, path: str, params: Mapping[str, Any] | Sequence[tuple[str, Any]]) -> Any:
        query = urllib.parse.urlencode(list(params.items()) if isinstance(params, Mapping) else list(params))
        answer = service_get(self.cluster.sandbox.netns_path, "prometheus-operated", PO.NAMESPACE, 9090,
                             f"{path}?{query}", timeout=30)
        body = json.loads(answer.body)
        if body.get("status") != "success":
            raise PromQLError(f"{body.get('errorType')}: {body.get('error')}")
        return body["data"]


@dataclass
class Stack:
    cluster: Cluster
    api: PrometheusAPI
    others: list[dict[str, Any]] = field(default_factory=list)  # what install() applied besides the CRDs

    def prometheus_pods(self) -> list[client.V1Pod]:
        sel = "app.kubernetes.io/name=prometheus"
        return self.cluster.core.list_namespaced_pod(PO.NAMESPACE, label_selector=sel).items

    def rule_names(self) -> set[str]:
        return {r["name"] for g in self.api._get("/api/v1/rules", {})["groups"] for r in g["rules"]}

    def alerts(self) -> list[dict[str, Any]]:
        return list(self.api._get("/api/v1/alerts", {})["alerts"])

    def jobs_up(self) -> dict[str, str]:
        return self.api.targets_up()


def apply(cluster: Cluster, objects: list[dict[str, Any]]) -> None:
    body = "\n".join(json.dumps(o) for o in objects)
    kubectl(cluster, "apply", "--server-side", "--force-conflicts", "--field-manager=kps", "-f", "-", input=body)


def prometheus_ready(cluster: Cluster) -> bool:
    pods = cluster.core.list_namespaced_pod(PO.NAMESPACE, label_selector="app.kubernetes.io/name=prometheus").items
    return bool(pods) and all(p.status.phase == "Running" and all(s.ready for s in p.status.container_statuses or [])
                              for p in pods)


def start_prometheus(cluster: Cluster) -> None:
    apply(cluster, [PO.prometheus(PO.NAMESPACE)])
    wait_for(lambda: prometheus_ready(cluster), timeout=240, interval=1,
             what="the Prometheus the operator runs to be Ready")


def install(cluster: Cluster) -> Stack:
    """CRDs, the operator (Ready) and its Prometheus (Ready); remove() undoes all but the CRDs."""
    root = PO.release_dir()
    kubectl(cluster, "apply", "--server-side", "--force-conflicts",
            *[a for f in PO.crd_files(root) for a in ("-f", str(f))])
    wait_established(cluster, *PO.crd_names(root))
    stack = Stack(cluster, InClusterPrometheus(cluster), PO.manifests(root))
    try:
        apply(cluster, stack.others[:-1])
        kubectl(cluster, "rollout", "status", "-n", PO.NAMESPACE, "deployment/prometheus-operator", "--timeout=120s")
        start_prometheus(cluster)
    except BaseException:
        remove(stack)
        raise
    return stack


def remove(stack: Stack) -> None:
    secret_scan.scan_namespace(stack.cluster, PO.NAMESPACE)
    kubectl(stack.cluster, "delete", "namespace", PO.NAMESPACE, "--wait=true", "--timeout=120s", check=False)
    for obj in stack.others:
        if obj["kind"] in ("ClusterRole", "ClusterRoleBinding"):
            kubectl(stack.cluster, "delete", obj["kind"].lower(), obj["metadata"]["name"], "--ignore-not-found",
                    check=False)
