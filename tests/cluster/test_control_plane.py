"""The cluster is real Kubernetes: version, a real node, Deployments to running containers, Pod
Security, the kubelet's termination, and `scripts/cluster up`/`down` leaving nothing behind."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kubernetes import client

from tests.cluster import controlplane, footprint
from tests.cluster.conftest import Cluster, kubectl
from tests.cluster.netcheck import dns_answers
from tests.cluster.node import NODE_NAME
from tests.cluster.sandbox import NODE_IP
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
PINNED = "v1.36.3"

#: A restricted container of an image made here (busybox, scripts/build-images.sh): it really runs.
RESTRICTED_CONTAINER = {
    "name": "app",
    "image": "bookgen.local/busybox:latest",
    "imagePullPolicy": "Never",
    "command": ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"],
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


def test_the_node_is_a_real_kubelet_on_containerd_and_schedulable(cluster: Cluster) -> None:
    (node,) = [n for n in cluster.core.list_node().items if n.metadata.name == NODE_NAME]
    ready = {c.type: c.status for c in node.status.conditions}
    assert ready["Ready"] == "True"
    assert not [t for t in node.spec.taints or [] if t.key == "node.kubernetes.io/not-ready"]
    assert node.status.node_info.kubelet_version == PINNED
    assert node.status.node_info.container_runtime_version.startswith("containerd://2.")
    assert {a.type: a.address for a in node.status.addresses}["InternalIP"] == NODE_IP


def test_a_kubelet_restart_by_its_pid_leaves_the_pods_running(cluster: Cluster) -> None:
    """controlplane.restart_kubelet (a fault of bench/chaos.py): a new kubelet process, the node still
    Ready, and CoreDNS's container the same one, not restarted (containerd kept it running)."""
    def dns() -> tuple[str, int]:
        (pod,) = cluster.core.list_namespaced_pod("kube-system", label_selector="k8s-app=kube-dns").items
        (status,) = pod.status.container_statuses
        return status.container_id, status.restart_count

    def kubelet_pid() -> int:
        state = controlplane.State.load(cluster.state_dir)
        assert state is not None
        return state.pids["kubelet"]

    before, pid = dns(), kubelet_pid()
    controlplane.restart_kubelet()
    assert kubelet_pid() != pid
    wait_for(lambda: controlplane.nodes_ready(cluster.state_dir, cluster.state), timeout=30, interval=0.5,
             what="the node Ready after the kubelet restart")
    assert dns() == before, "the kubelet restart restarted a container"


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
    assert len(pods) == 3 and all(p.status.phase == "Running" and p.spec.node_name == NODE_NAME for p in pods)
    # Real containers, each with its own address on the pod network and a container ID from containerd.
    assert len({p.status.pod_ip for p in pods}) == 3
    assert all(p.status.container_statuses[0].container_id.startswith("containerd://") for p in pods)


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

    wait_for(gone, timeout=30, what="the kubelet's final delete")


def test_the_audit_log_records_who_wrote_what(cluster: Cluster, namespace: str) -> None:
    mark = cluster.audit.mark()
    cluster.core.create_namespaced_config_map(namespace, {"metadata": {"name": "c"}, "data": {"k": "v"}})
    writes = cluster.audit.settled_writes("bookgen-test-admin", since=mark)
    assert [(w.verb, w.resource, w.namespace, w.name) for w in writes] == [("create", "configmaps", namespace, "c")]


def test_up_reaches_a_ready_node_and_dns_within_90_s_and_down_leaves_nothing(cluster: Cluster, tmp_path: Path) -> None:
    """Acceptance 1 (issue 21): a second, independent cluster with the binaries and images cached. `up`
    ends with the export line, a Ready node and answering cluster DNS within 90 s; a second `up` reuses
    it; `down` leaves no process, mount, cgroup, interface, route, firewall rule or namespace of it."""
    before = footprint.host_state()
    d = tmp_path / "cp"
    env = {**os.environ, "BOOKGEN_CLUSTER_DIR": str(d)}
    run = [sys.executable, "-m", "tests.cluster.controlplane"]
    st = cluster.state
    built = ["--bin", st.bin_dir, "--node-bin", st.node_bin, "--images", st.images]
    started = time.monotonic()
    up = subprocess.run([*run, "up", *built], capture_output=True, text=True, env=env, cwd=ROOT, timeout=240)
    took = time.monotonic() - started
    assert up.returncode == 0, up.stderr
    assert up.stdout.strip().splitlines()[-1] == f"export KUBECONFIG={d / 'pki' / 'admin.kubeconfig'}"
    state = controlplane.State.load(d)
    assert state is not None and all(controlplane.alive(p) for p in state.pids.values())
    sb = state.sandbox(d)
    assert controlplane.nodes_ready(d, state)
    assert dns_answers(sb.netns_path, "kubernetes.default.svc.cluster.local") == ["10.0.0.1"]
    assert took <= 90, f"up took {took:.1f} s ({state.timings})"
    netns_inode = os.stat(sb.netns_path).st_ino
    during = footprint.host_state()
    assert during["network namespaces"] != before["network namespaces"], "the listing sees a running cluster"
    assert footprint.cluster_processes(d, sb.cgroup_name, netns_inode), "the listing sees its processes"

    again = subprocess.run([*run, "up", *built], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert again.returncode == 0 and "already up" in again.stderr
    assert controlplane.State.load(d).pids == state.pids
    status = subprocess.run([*run, "status"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=30)
    assert status.returncode == 0 and "ready" in status.stdout

    down = subprocess.run([*run, "down"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert down.returncode == 0, down.stderr
    assert footprint.cluster_processes(d, sb.cgroup_name, netns_inode) == []
    after = footprint.host_state()
    assert {k: v for k, v in after.items() if v != before[k]} == {}, "down left something behind"
    assert not d.exists()
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", state.ports["api"])) != 0, "the apiserver's forwarder still listens"
