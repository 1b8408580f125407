"""The BookGenQueue CRD on a real API server: schema, defaults, CEL rules (cost budget included),
the status subresource, and the chart installing and upgrading with the real helm."""

from __future__ import annotations

import copy
import json
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml

from tests.cluster import secret_scan
from tests.cluster.conftest import RESTRICTED, Cluster, kubectl, wait_established
from tests.cluster.operator_run import CHART, helm, helm_binary
from tests.support.waiting import wait_for
from tests.unit.test_crd_schema import FULL_STATUS, INVALID, invalid_case

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("bookgenqueue-*.yaml"))
GROUP, VERSION, PLURAL = "bookgen.io", "v1alpha1", "bookgenqueues"


@pytest.fixture(scope="module")
def crd(cluster: Cluster) -> None:
    kubectl(cluster, "apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    wait_established(cluster, "bookgenqueues.bookgen.io")


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_is_accepted(cluster: Cluster, crd: None, namespace: str, path: Path) -> None:
    out = kubectl(cluster, "apply", "-n", namespace, "-f", str(path)).stdout
    assert "created" in out
    name = yaml.safe_load(path.read_text())["metadata"]["name"]
    stored = cluster.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    # Defaults come from the server's structural schema.
    assert stored["spec"]["autoscaling"]["pollIntervalSeconds"] >= 0.1


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_every_invalid_case_is_rejected_by_the_api_server_with_the_rules_message(
    cluster: Cluster, crd: None, namespace: str, path: Path
) -> None:
    body, expected = invalid_case(path)
    result = kubectl(cluster, "create", "-n", namespace, "-f", "-", input=yaml.safe_dump(body), check=False)
    assert result.returncode != 0, f"{path.name} was accepted by the API server"
    assert "is invalid" in result.stderr and expected in result.stderr, result.stderr


def test_a_status_write_is_read_back_unpruned(cluster: Cluster, crd: None, namespace: str) -> None:
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "BookGenQueue", "metadata": {"name": "s"}, "spec": {}}
    cluster.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    status = copy.deepcopy(FULL_STATUS)
    cluster.custom.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, "s", {"status": status})
    stored = cluster.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "s")["status"]
    assert json.loads(json.dumps(stored)) == status


def test_printer_columns_show_in_kubectl_get(cluster: Cluster, crd: None, namespace: str) -> None:
    kubectl(cluster, "apply", "-n", namespace, "-f", str(ROOT / "examples" / "bookgenqueue-minimal.yaml"))
    header = kubectl(cluster, "get", "bgq", "-n", namespace).stdout.splitlines()[0]
    assert header.split()[0] == "NAME" and len(header.split()) >= 4


def test_helm_install_and_upgrade_of_the_chart(cluster: Cluster, crd: None) -> None:
    suffix = uuid.uuid4().hex[:6]
    ns, release = f"chart-{suffix}", f"op-{suffix}"
    name = f"{release}-bookgen-operator"
    cluster.core.create_namespace({"metadata": {"name": ns, "labels": RESTRICTED}})
    try:
        helm(cluster, "install", release, str(CHART), "-n", ns, "--wait", "--timeout", "120s")
        dep = cluster.apps.read_namespaced_deployment(name, ns)
        # Two leader-elected replicas by default; both pods passed Pod Security "restricted" and became Ready.
        assert dep.spec.replicas == 2 and dep.status.ready_replicas == 2
        helm(cluster, "upgrade", release, str(CHART), "-n", ns, "--set", "logLevel=debug", "--wait",
             "--timeout", "120s")
        wait_for(lambda: "--verbose" in cluster.apps.read_namespaced_deployment(name, ns)
                 .spec.template.spec.containers[0].args, timeout=30, what="the upgrade's new argument")
        history = helm(cluster, "history", release, "-n", ns, "-o", "json")
        assert [r["status"] for r in json.loads(history)][-1] == "deployed"
        secret_scan.scan_namespace(cluster, ns)  # the operator's log, before its pods go
        helm(cluster, "uninstall", release, "-n", ns, "--wait")
        assert not cluster.apps.list_namespaced_deployment(ns).items
    finally:
        # Cluster-scoped RBAC outlives the namespace: uninstall whatever is left, even after a failure.
        subprocess.run([helm_binary(), "uninstall", release, "-n", ns], env=cluster.env(), capture_output=True)
        cluster.delete_namespace(ns)


def test_the_charts_monitors_and_rules_are_accepted_by_the_prometheus_operator_crds(cluster: Cluster) -> None:
    """The chart's ServiceMonitor, PodMonitor and PrometheusRule, labelled for a kube-prometheus-stack
    release, against the real prometheus-operator CRDs (installed by the session fixture): `helm install`
    fails if their schemas refuse anything, and the rules are the operator's alerts only."""
    suffix = uuid.uuid4().hex[:6]
    ns, release = f"chart-{suffix}", f"mon-{suffix}"
    cluster.core.create_namespace({"metadata": {"name": ns, "labels": RESTRICTED}})
    try:
        helm(cluster, "install", release, str(CHART), "-n", ns, "--set", f"fullnameOverride={release}",
             *[a for kind in ("metrics.serviceMonitor", "podMonitor", "prometheusRule")
               for a in ("--set", f"{kind}.enabled=true", "--set", f"{kind}.additionalLabels.release=kps")])
        found = {}
        for plural in ("servicemonitors", "podmonitors", "prometheusrules"):
            obj = cluster.custom.get_namespaced_custom_object("monitoring.coreos.com", "v1", ns, plural, release)
            assert obj["metadata"]["labels"]["release"] == "kps", plural
            found[plural] = obj
        alerts = {r["alert"] for g in found["prometheusrules"]["spec"]["groups"] for r in g["rules"]}
        assert alerts == {"BookGenOperatorDown", "BookGenOperatorReconcileErrors"}
        assert found["servicemonitors"]["spec"]["endpoints"][0]["port"] == "metrics"
    finally:
        subprocess.run([helm_binary(), "uninstall", release, "-n", ns], env=cluster.env(), capture_output=True)
        cluster.delete_namespace(ns)
