"""The operator as a user runs it: the chart's Deployment, in real pods of the image built from our
Dockerfile, with leader election, under the chart's ServiceAccount and RBAC.

A module installs the chart once with `replicaCount: 0`; each test starts the operator by setting the
Deployment's replicas and environment (`start`) and stops it (`stop`), which makes the kubelet send
SIGTERM to PID 1 and records how each container exited. The test reads the operator's logs with
`kubectl logs`, its metrics from inside the cluster's network namespace, and its API calls from the
audit log (as `system:serviceaccount:<namespace>:<release>`).
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from kubernetes import client, watch

from tests.cluster import api_calls, secret_scan
from tests.cluster.conftest import Cluster, kubectl
from tests.cluster.netcheck import in_netns
from tests.cluster.operator_run import CHART, helm
from tests.support.waiting import wait_for

METRICS_PORT = 9090


def product_image(cluster: Cluster) -> tuple[str, str]:
    """(repository, tag) of the product image this run built (scripts/build-images.sh)."""
    for line in (Path(cluster.state.images) / "images.txt").read_text().splitlines():
        ref = line.split()[0]
        if "/bookgen-queue:" in ref:
            repository, _, tag = ref.rpartition(":")
            return repository, tag
    raise AssertionError("images.txt names no bookgen-queue image")


@dataclass
class ChartInstall:
    namespace: str
    release: str

    @property
    def service_account(self) -> str:
        return self.release

    @property
    def username(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.release}"


def install(cluster: Cluster, namespace: str, release: str, *values: str, replicas: int = 0) -> ChartInstall:
    """`helm install` of the chart with this run's image; the operator Deployment starts with `replicas`."""
    repository, tag = product_image(cluster)
    sets = [f"fullnameOverride={release}", f"image.repository={repository}", f"image.tag={tag}",
            "image.pullPolicy=Never", f"replicaCount={replicas}", *values]
    helm(cluster, "install", release, str(CHART), "-n", namespace, *[a for v in sets for a in ("--set", v)])
    chart = ChartInstall(namespace, release)
    wait_until_owner_references_map(cluster, chart)
    return chart


def wait_until_owner_references_map(cluster: Cluster, chart: ChartInstall) -> None:
    """Right after a CRD is (re)installed the API server's OwnerReferencesPermissionEnforcement cannot map
    BookGenQueue for some 20 s and refuses children that name one as owner (docs/known-limits.md). The
    operator retries, but a test's first queue would wait for it: wait here instead, with a dry-run create
    of such a child as the chart's ServiceAccount (an admin skips the mapping altogether)."""
    from kubernetes import config

    api = config.new_client_from_config(str(cluster.kubeconfig))
    api.set_default_header("Impersonate-User", chart.username)
    owner = {"apiVersion": "bookgen.io/v1alpha1", "kind": "BookGenQueue", "name": "probe",
             "uid": "00000000-0000-0000-0000-000000000000", "controller": True, "blockOwnerDeletion": True}

    def mapped() -> bool:
        try:
            client.CoreV1Api(api).create_namespaced_secret(
                chart.namespace, {"metadata": {"name": "owner-probe", "ownerReferences": [owner]}}, dry_run="All")
        except client.ApiException as exc:
            if "RESTMapping" in str(exc.body):
                return False
            raise
        return True

    try:
        wait_for(mapped, timeout=120, interval=1, what="the API server to map BookGenQueue for owner checks")
    finally:
        api.close()


def uninstall(cluster: Cluster, chart: ChartInstall) -> None:
    """`helm uninstall`, the operator's namespace scanned for secrets first (its running replicas' logs)."""
    secret_scan.scan_namespace(cluster, chart.namespace)
    helm(cluster, "uninstall", chart.release, "-n", chart.namespace, "--wait")


@dataclass
class OperatorPods:
    cluster: Cluster
    chart: ChartInstall
    audit_mark: int
    exit_codes: dict[str, int] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)

    def pods(self) -> list[client.V1Pod]:
        sel = f"app.kubernetes.io/instance={self.chart.release}"
        return [p for p in self.cluster.core.list_namespaced_pod(self.chart.namespace, label_selector=sel).items
                if p.metadata.deletion_timestamp is None]

    def leader(self) -> str | None:
        try:
            lease = client.CoordinationV1Api(self.cluster.api).read_namespaced_lease(
                self.chart.release, self.chart.namespace)
        except client.ApiException as e:
            if e.status == 404:
                return None
            raise
        holder = lease.spec.holder_identity
        return holder if holder in {p.metadata.name for p in self.pods()} else None

    def log(self) -> str:
        """Every replica's log: of those still running, and those kept from stopped ones."""
        for pod in self.pods():
            self.logs[pod.metadata.name] = self._pod_log(pod.metadata.name)
        return "\n".join(f"--- {name}\n{text}" for name, text in self.logs.items())

    def _pod_log(self, name: str) -> str:
        out = kubectl(self.cluster, "logs", "-n", self.chart.namespace, name, check=False)
        return out.stdout if out.returncode == 0 else self.logs.get(name, "")

    def forbidden(self) -> list[str]:
        """Lines where RBAC refused a call (a namespace being deleted refuses with 403 too: not RBAC)."""
        return [line for line in self.log().splitlines()
                if ("Forbidden" in line or " 403" in line)
                and "NamespaceTerminating" not in line and "because it is being terminated" not in line]

    def metrics_text(self, pod: client.V1Pod) -> str:
        import urllib.request

        def get() -> str:
            with urllib.request.urlopen(f"http://{pod.status.pod_ip}:{METRICS_PORT}/metrics", timeout=5) as r:
                return r.read().decode()

        try:
            return in_netns(self.cluster.sandbox.netns_path, get)
        except OSError:
            return ""

    def metric_sum(self, metric: str, labels: str = "") -> float:
        """The sum of one metric over its labels (those containing `labels`) and over the replicas."""
        total = 0.0
        for pod in self.pods():
            text = self.metrics_text(pod)
            total += sum(float(v) for found, v in re.findall(rf"^{metric}(?:\{{([^}}]*)\}})? (\S+)$", text, re.M)
                         if labels in found)
        return total

    def rss_mib(self) -> float:
        """The leader's resident memory (PID 1 of its container), read in the container."""
        name = self.leader()
        assert name, "no replica leads"
        status = kubectl(self.cluster, "exec", "-n", self.chart.namespace, name, "--", "cat", "/proc/1/status").stdout
        kib = int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1))  # type: ignore[union-attr]
        return kib / 1024

    def stop(self, timeout: float = 60) -> dict[str, int]:
        """Scale to 0: the kubelet sends SIGTERM to each operator's PID 1; returns pod -> exit code. The
        replicas' logs are scanned for secrets: before (every container, previous runs too) and the last
        words each wrote while it stopped (kept in `logs`)."""
        secret_scan.scan_namespace(self.cluster, self.chart.namespace)
        self.log()
        names = {p.metadata.name for p in self.pods()}
        apps = self.cluster.apps
        apps.patch_namespaced_deployment(self.chart.release, self.chart.namespace, {"spec": {"replicas": 0}})
        sel = f"app.kubernetes.io/instance={self.chart.release}"
        deadline = time.monotonic() + timeout
        w = watch.Watch()
        for event in w.stream(self.cluster.core.list_namespaced_pod, self.chart.namespace, label_selector=sel,
                              timeout_seconds=int(timeout)):
            pod = event["object"]
            name = pod.metadata.name
            for status in pod.status.container_statuses or []:
                if status.state.terminated is not None:
                    self.exit_codes[name] = status.state.terminated.exit_code
                    self.logs.setdefault(name, "")
            if event["type"] == "DELETED":
                names.discard(name)
            elif name in names and pod.metadata.deletion_timestamp and name not in self.exit_codes:
                self.logs[name] = self._pod_log(name) or self.logs.get(name, "")
            if not names or time.monotonic() > deadline:
                w.stop()
        secret_scan.scan_texts(self.cluster, {f"{self.chart.namespace}/pod/{name}/operator (kept at stop)": text
                                              for name, text in self.logs.items()}, "operator logs")
        assert not names, f"operator pods still there after {timeout} s: {names}"
        return dict(self.exit_codes)


def start(cluster: Cluster, chart: ChartInstall, *, replicas: int = 2,
          env: dict[str, str] | None = None) -> OperatorPods:
    """Run the operator with `replicas` and extra environment; wait until they run and one leads."""
    environment = {"BOOKGEN_RECONCILE_INTERVAL": "2", "BOOKGEN_AUTOSCALER": "off", **(env or {})}
    container = {"name": "operator", "env": [{"name": k, "value": v} for k, v in environment.items()]}
    mark = cluster.audit.mark()
    cluster.apps.patch_namespaced_deployment(chart.release, chart.namespace, {"spec": {
        "replicas": replicas, "template": {"spec": {"containers": [container]}}}})
    op = OperatorPods(cluster, chart, audit_mark=mark)

    def running() -> bool:
        pods = op.pods()
        current = [p for p in pods if _has_env(p, environment)]
        return len(pods) == replicas and len(current) == replicas and all(
            any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or []) for p in current)

    wait_for(running, timeout=120, interval=0.5, what=f"{replicas} operator pods running with {environment}")
    wait_for(op.leader, timeout=60, interval=0.5, what="one operator replica leading")
    return op


def _has_env(pod: client.V1Pod, env: dict[str, str]) -> bool:
    have = {e.name: e.value for c in pod.spec.containers for e in c.env or []}
    return all(have.get(k) == v for k, v in env.items())


def stop_and_check(cluster: Cluster, op: OperatorPods) -> None:
    """Stop the operator: every replica exits 0 on SIGTERM, RBAC never refused it, its calls are recorded."""
    forbidden = op.forbidden()
    codes = op.stop()
    assert codes and all(code == 0 for code in codes.values()), f"operator exit codes {codes}:\n{op.log()[-3000:]}"
    assert not forbidden, "the chart's RBAC refused the operator:\n" + "\n".join(forbidden)
    cluster.audit.settled_writes(op.chart.username, since=op.audit_mark)
    api_calls.OBSERVED.update(cluster.audit.calls(op.chart.username, since=op.audit_mark))


@contextlib.contextmanager
def chart_operator(cluster: Cluster, *, replicas: int = 1) -> Iterator[OperatorPods]:
    """The chart installed in a fresh restricted namespace and its operator started; on exit stopped and
    checked, uninstalled, and the namespace deleted (scanned for secrets first): a module's fixture."""
    from tests.cluster.product import restricted_namespace

    system = restricted_namespace(cluster, "bookgen-system")
    chart = install(cluster, system, system.replace("-system", ""))
    op = start(cluster, chart, replicas=replicas)
    try:
        yield op
    finally:
        stop_and_check(cluster, op)
        uninstall(cluster, chart)
        cluster.delete_namespace(system)
