"""The control plane is real Kubernetes: version, nodes, Deployments to Ready pods, Pod Security."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from kubernetes import client

from tests.cluster import controlplane
from tests.cluster.conftest import Cluster, kubectl
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
PINNED = "v1.36.3"

RESTRICTED_CONTAINER = {
    "name": "app",
    "image": "registry.example/app:1",
    "securityContext": {
        "allowPrivilegeEscalation": False,
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    },
}


def test_server_reports_the_pinned_version_to_kubectl(cluster: Cluster) -> None:
    out = json.loads(kubectl(cluster, "version", "-o", "json").stdout)
    assert out["serverVersion"]["gitVersion"] == PINNED
    client_minor = int(out["clientVersion"]["minor"].rstrip("+"))
    assert abs(client_minor - int(out["serverVersion"]["minor"])) <= 1, "kubectl must be within one minor version"


def test_the_node_is_ready_and_schedulable(cluster: Cluster) -> None:
    (node,) = [n for n in cluster.core.list_node().items if n.metadata.name == "fake-node-0"]
    ready = {c.type: c.status for c in node.status.conditions}
    assert ready["Ready"] == "True"
    assert not [t for t in node.spec.taints or [] if t.key == "node.kubernetes.io/not-ready"]


def test_a_restricted_deployment_reaches_three_ready_pods(cluster: Cluster, namespace: str) -> None:
    labels = {"app": "three"}
    cluster.apps.create_namespaced_deployment(namespace, {
        "metadata": {"name": "three"},
        "spec": {"replicas": 3, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels}, "spec": {"containers": [RESTRICTED_CONTAINER]}}},
    })  # fmt: skip
    dep = wait_for(
        lambda: (d := cluster.apps.read_namespaced_deployment("three", namespace)).status.ready_replicas == 3 and d,
        timeout=60, what="3 ready replicas",
    )
    assert dep.status.available_replicas == 3
    pods = cluster.core.list_namespaced_pod(namespace, label_selector="app=three").items
    assert len(pods) == 3 and all(p.status.phase == "Running" and p.spec.node_name == "fake-node-0" for p in pods)


def test_a_privileged_pod_is_refused_by_pod_security(cluster: Cluster, namespace: str) -> None:
    pod = {"metadata": {"name": "root"},
           "spec": {"containers": [{"name": "c", "image": "busybox", "securityContext": {"privileged": True}}]}}
    with pytest.raises(client.ApiException) as refused:
        cluster.core.create_namespaced_pod(namespace, pod)
    assert refused.value.status == 403
    message = json.loads(refused.value.body)["message"]
    assert 'violates PodSecurity "restricted:latest"' in message and "privileged" in message, message


def test_deleting_a_pod_goes_through_terminating_to_gone(cluster: Cluster, namespace: str) -> None:
    cluster.core.create_namespaced_pod(namespace, {"metadata": {"name": "p"}, "spec": {
        "containers": [RESTRICTED_CONTAINER], "terminationGracePeriodSeconds": 5}})
    wait_for(lambda: cluster.core.read_namespaced_pod("p", namespace).status.phase == "Running", timeout=30,
             what="pod Running")
    cluster.core.delete_namespaced_pod("p", namespace)

    def gone() -> bool:
        try:
            cluster.core.read_namespaced_pod("p", namespace)
            return False
        except client.ApiException as e:
            return e.status == 404

    wait_for(gone, timeout=30, what="the agent's final delete")


def test_the_audit_log_records_who_wrote_what(cluster: Cluster, namespace: str) -> None:
    mark = cluster.audit.mark()
    cluster.core.create_namespaced_config_map(namespace, {"metadata": {"name": "c"}, "data": {"k": "v"}})
    writes = cluster.audit.settled_writes("bookgen-test-admin", since=mark)
    assert [(w.verb, w.resource, w.namespace, w.name) for w in writes] == [("create", "configmaps", namespace, "c")]


def test_cluster_script_up_status_down_in_its_own_folder(cluster: Cluster, tmp_path: Path) -> None:
    """A second, independent control plane: `up` ends with the export line, `down` leaves nothing running."""
    env = {**os.environ, "BOOKGEN_CLUSTER_DIR": str(tmp_path / "cp")}
    run = [sys.executable, "-m", "tests.cluster.controlplane"]
    up = subprocess.run([*run, "up", "--bin", controlplane.State.load(cluster.state_dir).bin_dir],
                        capture_output=True, text=True, env=env, cwd=ROOT, timeout=240)
    assert up.returncode == 0, up.stderr
    last = up.stdout.strip().splitlines()[-1]
    assert last == f"export KUBECONFIG={tmp_path / 'cp' / 'pki' / 'admin.kubeconfig'}"
    state = controlplane.State.load(tmp_path / "cp")
    assert state is not None and all(controlplane.alive(p) for p in state.pids.values())
    again = subprocess.run([*run, "up", "--bin", state.bin_dir], capture_output=True, text=True, env=env, cwd=ROOT,
                           timeout=60)
    assert again.returncode == 0 and "already up" in again.stderr
    assert controlplane.State.load(tmp_path / "cp").pids == state.pids
    status = subprocess.run([*run, "status"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=30)
    assert status.returncode == 0 and "ready" in status.stdout
    down = subprocess.run([*run, "down"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert down.returncode == 0
    assert not [c for c, p in state.pids.items() if controlplane.alive(p)]
    for name, port in state.ports.items():
        with __import__("socket").socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, f"{name} port {port} still listening"
    assert not (tmp_path / "cp").exists()
