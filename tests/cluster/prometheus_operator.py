"""The Prometheus Operator in the test cluster, set up the way kube-prometheus-stack's defaults set it up.

- The operator and its config reloader are built from the pinned module
  (tests/cluster/node-bin/prometheus-operator, scripts/build-prometheus-operator.sh) and run from images
  made by scripts/build-images.sh, and so is the Prometheus it manages (tests/cluster/node-bin/prometheus:
  Debian's build lacks Kubernetes service discovery). The Prometheus resource names its `version`.
- The CRDs, the operator's RBAC and Prometheus's RBAC are the release's own files (example/ in the
  module zip), only their namespace changed.
- Like kube-prometheus-stack's Prometheus, it selects ServiceMonitors, PodMonitors and PrometheusRules
  in every namespace by the label `release: <its release>` (`serviceMonitorSelectorNilUsesHelmValues`,
  the chart's default), so our chart and our queues are found only when they carry that label.
  The scrape and rule evaluation intervals are 5 s (kube-prometheus-stack: 30 s) to keep tests short.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.cluster.monitoring_crds import MODULE, MODULE_DIR

NAMESPACE = "monitoring"
RELEASE = "kps"  # the kube-prometheus-stack release name its Prometheus selects by
SELECTOR = {"release": RELEASE}
PROMETHEUS = f"{RELEASE}-kube-prometheus-prometheus"  # kube-prometheus-stack's name for it


def _pinned(folder: str, module: str) -> str:
    """The version of `module` that tests/cluster/node-bin/<folder>/go.mod requires."""
    gomod = (Path(__file__).parent / "node-bin" / folder / "go.mod").read_text()
    found = re.search(rf"^\s*(?:require )?{re.escape(module)} (v[0-9.]+)", gomod, re.M)
    assert found, f"{folder}/go.mod does not require {module}"
    return found.group(1)


OPERATOR_VERSION = _pinned("prometheus-operator", MODULE)
#: Prometheus module v0.3MM.P is Prometheus 3.MM.P (scripts/build-prometheus.sh reads it the same way).
PROMETHEUS_VERSION = "v3.{}.{}".format(*(int(x) for x in re.findall(
    r"v0\.3(\d+)\.(\d+)", _pinned("prometheus", "github.com/prometheus/prometheus"))[0]))
IMAGES = {
    "operator": f"bookgen.local/prometheus-operator:{OPERATOR_VERSION}",
    "reloader": f"bookgen.local/prometheus-config-reloader:{OPERATOR_VERSION}",
    "prometheus": f"bookgen.local/prometheus:{PROMETHEUS_VERSION}",
}
#: The in-cluster URL of the Prometheus (the operator's governing Service `prometheus-operated`).
URL = f"http://prometheus-operated.{NAMESPACE}.svc:9090"


def release_dir() -> Path:
    """The pinned release's files, from the Go module cache (downloaded and checked against go.sum)."""
    result = subprocess.run(["go", "mod", "download", "-json", MODULE], cwd=MODULE_DIR, capture_output=True,
                            text=True, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"go mod download {MODULE} failed: {result.stdout[-2000:]}{result.stderr[-2000:]}")
    return Path(json.loads(result.stdout)["Dir"])


def crd_files(root: Path) -> list[Path]:
    """Every CRD of the release (the operator's controllers watch them all), as files: kubectl reads
    them; PyYAML does not (a YAML 1.1 `=` value in the Prometheus CRD)."""
    return sorted((root / "example" / "prometheus-operator-crd").glob("*.yaml"))


def crd_names(root: Path) -> list[str]:
    return [f.name.removesuffix(".yaml").split("_", 1)[1] + "." + f.name.split("_", 1)[0] for f in crd_files(root)]


def _rbac(root: Path, folder: str, namespace: str) -> list[dict[str, Any]]:
    objects = []
    for f in sorted((root / "example" / "rbac" / folder).glob("*.yaml")):
        for obj in yaml.safe_load_all(f.read_text()):
            if not obj or obj["kind"] not in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding"):
                continue
            if obj["kind"] == "ServiceAccount":
                obj["metadata"]["namespace"] = namespace
            for subject in obj.get("subjects", []):
                subject["namespace"] = namespace
            objects.append(obj)
    return objects


def _restricted_container() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}


def operator_deployment(namespace: str) -> dict[str, Any]:
    """The release's example Deployment, with our images and no kubelet Service (nothing here scrapes it)."""
    labels = {"app.kubernetes.io/name": "prometheus-operator", "app.kubernetes.io/component": "controller"}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "prometheus-operator", "namespace": namespace, "labels": labels},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {
                "serviceAccountName": "prometheus-operator", "automountServiceAccountToken": True,
                "securityContext": {"runAsNonRoot": True, "runAsUser": 65534,
                                    "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{
                    "name": "prometheus-operator", "image": IMAGES["operator"], "imagePullPolicy": "Never",
                    "args": [f"--prometheus-config-reloader={IMAGES['reloader']}", "--log-level=info"],
                    "ports": [{"containerPort": 8080, "name": "http"}],
                    "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "200Mi"}},
                    "securityContext": _restricted_container(),
                }],
            },
        }},
    }  # fmt: skip


def prometheus(namespace: str) -> dict[str, Any]:
    """A Prometheus resource as kube-prometheus-stack writes it (selectors by release, every namespace)."""
    every_namespace: dict[str, Any] = {}
    return {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "Prometheus",
        "metadata": {"name": PROMETHEUS, "namespace": namespace, "labels": SELECTOR},
        "spec": {
            "version": PROMETHEUS_VERSION, "image": IMAGES["prometheus"], "replicas": 1,
            "serviceAccountName": "prometheus",
            "serviceMonitorSelector": {"matchLabels": SELECTOR}, "serviceMonitorNamespaceSelector": every_namespace,
            "podMonitorSelector": {"matchLabels": SELECTOR}, "podMonitorNamespaceSelector": every_namespace,
            "ruleSelector": {"matchLabels": SELECTOR}, "ruleNamespaceSelector": every_namespace,
            "probeSelector": {"matchLabels": SELECTOR}, "scrapeConfigSelector": {"matchLabels": SELECTOR},
            "scrapeInterval": "5s", "evaluationInterval": "5s", "retention": "1h",
            "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}},
            "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 2000, "fsGroup": 2000,
                                "seccompProfile": {"type": "RuntimeDefault"}},
        },
    }  # fmt: skip


def manifests(root: Path, namespace: str = NAMESPACE) -> list[dict[str, Any]]:
    """Everything but the CRDs, in the order to apply: RBAC, the operator, then the Prometheus it runs."""
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    return [ns, *_rbac(root, "prometheus-operator", namespace), *_rbac(root, "prometheus", namespace),
            operator_deployment(namespace), prometheus(namespace)]
