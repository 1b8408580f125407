"""Producers and the CLI reach a cluster queue (issue 23, acceptance 5), on the real node: an
application pod in another namespace (our image, Pod Security "restricted") runs the README's
"Connect your application" snippet as it is written and submits a book; `bookgen -n NS --queue NAME`
run on this machine through the kubeconfig, with no REDIS_URL anywhere, lists it and follows it to
the end, through a port-forward the API server and the kubelet open.

The cluster enforces NetworkPolicies (kube-router, tests/cluster/netpol_engine.py), so the application
pod gets through only because the policy the operator writes admits it: the stored policy has the
admitted peer beside the queue's own pods and the operator, the pod matches that peer (its labels, its
namespace's labels), and the real submission path from that pod works: the Service's cluster DNS name
from another namespace, the password from a Secret, the job store, the workers. What the policy keeps
out is test_real_node_netpol.py's.

The CLI's own misuse on the real API server: a queue that does not exist, and a kubeconfig whose user
may read the queue but not its Secret (a ServiceAccount token with a Role that grants only that).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.cluster import operator_pods
from tests.cluster.conftest import Cluster
from tests.cluster.product import Queue, queue_in_namespace, scratch_namespace
from tests.support.readme import connect_snippet
from tests.support.waiting import wait_for

BOOKGEN = str(Path(sys.executable).with_name("bookgen"))
APP_LABELS = {"app": "biographer"}


@pytest.fixture(scope="module")
def operator(cluster: Cluster) -> Iterator[operator_pods.OperatorPods]:
    with operator_pods.chart_operator(cluster) as op:
        yield op


@pytest.fixture
def queue(cluster: Cluster, operator: operator_pods.OperatorPods) -> Iterator[Queue]:
    with queue_in_namespace(cluster, "writers") as q:
        yield q


@pytest.fixture
def app_namespace(cluster: Cluster) -> Iterator[str]:
    with scratch_namespace(cluster, "web") as name:
        yield name


def bookgen(cluster: Cluster, tmp_path: Path, *argv: str, kubeconfig: Path | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`bookgen ARGV` as a user runs it on this machine: KUBECONFIG set, no REDIS_* or state folder, in
    an empty folder (no ./.bookgen)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "BOOKGEN_"))}
    env["KUBECONFIG"] = str(kubeconfig or cluster.kubeconfig)
    return subprocess.run([BOOKGEN, *argv], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=timeout)


def app_pod(image: str, queue: Queue) -> dict[str, Any]:
    """The application as docs/clients.md shows it: the README's snippet, REDIS_HOST the Service's DNS
    name, REDIS_PASSWORD from a Secret of its own namespace (a copy of the queue's)."""
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "biographer", "labels": dict(APP_LABELS)},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "app", "image": image, "imagePullPolicy": "Never",
                "command": ["python", "-c", connect_snippet()],
                "env": [{"name": "REDIS_HOST", "value": f"{queue.name}-redis.{queue.namespace}.svc"},
                        {"name": "REDIS_PASSWORD",
                         "valueFrom": {"secretKeyRef": {"name": f"{queue.name}-redis", "key": "password"}}}],
                "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
                "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                    "readOnlyRootFilesystem": True},
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
            }],
            "volumes": [{"name": "tmp", "emptyDir": {}}],
        },
    }


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A LabelSelector with matchLabels only (what this test writes) against a set of labels."""
    assert set(selector) <= {"matchLabels"}, selector
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def test_an_application_in_another_namespace_submits_and_the_cli_lists_it_by_the_queues_name(
    cluster: Cluster, operator: operator_pods.OperatorPods, queue: Queue, app_namespace: str, tmp_path: Path,
) -> None:
    peer = {"podSelector": {"matchLabels": dict(APP_LABELS)},
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": app_namespace}}}
    queue.create({"redis": {"allowedClients": [peer], "persistence": {"enabled": False}}})
    queue.wait_ready(timeout=240)

    # The policy as the API server stores it: ours, the operator, and the application's peer.
    policy = client.NetworkingV1Api(cluster.api).read_namespaced_network_policy(f"{queue.name}-redis",
                                                                                queue.namespace)
    peers = cluster.api.sanitize_for_serialization(policy)["spec"]["ingress"][0]["from"]
    assert peers[-1] == peer and len(peers) == 3, peers

    # The application: a copy of the password Secret in its own namespace, the README's snippet.
    password = queue.secret("redis", "password")
    cluster.core.create_namespaced_secret(app_namespace, {
        "metadata": {"name": f"{queue.name}-redis"},
        "data": {"password": base64.b64encode(password.encode()).decode()}})
    repository, tag = operator_pods.product_image(cluster)
    cluster.core.create_namespaced_pod(app_namespace, app_pod(f"{repository}:{tag}", queue))
    pod = wait_for(lambda: (p := cluster.core.read_namespaced_pod("biographer", app_namespace)).status.phase
                   in ("Succeeded", "Failed") and p, timeout=120, interval=1, what="the application pod to finish")
    log = cluster.core.read_namespaced_pod_log("biographer", app_namespace)
    assert pod.status.phase == "Succeeded", log
    job_id = log.strip().splitlines()[-1]
    namespace_labels = cluster.core.read_namespace(app_namespace).metadata.labels
    assert selects(peer["podSelector"], pod.metadata.labels) and selects(peer["namespaceSelector"], namespace_labels)

    # The CLI on this machine, by the queue's name, with no REDIS_URL: the job is listed, then followed.
    listed = bookgen(cluster, tmp_path, "-n", queue.namespace, "--queue", queue.name, "jobs", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    assert job_id in [job["id"] for job in json.loads(listed.stdout)], listed.stdout
    assert password not in listed.stdout + listed.stderr

    def finished() -> dict[str, Any] | None:
        shown = bookgen(cluster, tmp_path, "show", job_id, "-o", "json", "-n", queue.namespace, "--queue", queue.name)
        assert shown.returncode == 0, shown.stderr
        job = dict(json.loads(shown.stdout))
        return job if job["state"] in ("COMPLETED", "COMPLETED_WITH_ERRORS", "FAILED", "CANCELLED") else None

    final = wait_for(finished, timeout=240, interval=2, what=f"job {job_id} to end")
    assert final["state"] == "COMPLETED" and final["subject"] == "Ada Lovelace", final
    status = bookgen(cluster, tmp_path, "-n", queue.namespace, "--queue", queue.name, "status", "-o", "json")
    assert status.returncode == 0, status.stderr
    assert {w["pool"] for w in json.loads(status.stdout)["workers"]} >= {"content", "validation", "export"}


def test_the_cli_says_in_one_line_what_it_cannot_reach(
    cluster: Cluster, operator: operator_pods.OperatorPods, queue: Queue, tmp_path: Path,
) -> None:
    queue.create({"redis": {"persistence": {"enabled": False}}})
    missing = bookgen(cluster, tmp_path, "-n", queue.namespace, "--queue", "nosuch", "jobs")
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1, missing.stderr
    assert f"no BookGenQueue nosuch in namespace {queue.namespace}" in missing.stderr

    # A user who may read the queue but not its Secret: a ServiceAccount token and a Role for just that.
    rbac = client.RbacAuthorizationV1Api(cluster.api)
    cluster.core.create_namespaced_service_account(queue.namespace, {"metadata": {"name": "reader"}})
    rbac.create_namespaced_role(queue.namespace, {"metadata": {"name": "reader"}, "rules": [
        {"apiGroups": ["bookgen.io"], "resources": ["bookgenqueues"], "verbs": ["get"]}]})
    rbac.create_namespaced_role_binding(queue.namespace, {
        "metadata": {"name": "reader"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                                    "name": "reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": queue.namespace}]})
    token = cluster.core.create_namespaced_service_account_token(
        "reader", queue.namespace, {"spec": {"expirationSeconds": 600}}).status.token
    admin = json.loads(cluster.kubeconfig.read_text())
    reader = {**admin, "users": [{"name": "reader", "user": {"token": token}}],
              "contexts": [{"name": "reader", "context": {"cluster": admin["clusters"][0]["name"], "user": "reader",
                                                          "namespace": queue.namespace}}],
              "current-context": "reader"}
    path = tmp_path / "reader.kubeconfig"
    path.write_text(json.dumps(reader))
    path.chmod(0o600)
    refused = bookgen(cluster, tmp_path, "--queue", queue.name, "jobs", kubeconfig=path)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert (f"context reader may not read Secret {queue.name}-redis in namespace {queue.namespace} "
            "(the Redis password): secrets") in refused.stderr
    assert "Traceback" not in refused.stderr
