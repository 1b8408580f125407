"""Fixtures for the operator process against the real control plane, reached through a kubeconfig.

`cluster` here wraps the session's real control plane (tests/cluster/conftest.py): a namespace per
test, deleted afterwards, the CRD installed if the server does not serve it yet, and the operator's
own async client (bookgen_operator.controller.client) logged in the way kopf logs in. Never the ambient
KUBECONFIG: a developer's current context may be a cluster that matters.

The operator runs as a real process (`python -m bookgen_operator --namespace <ns>`) logged in from the
kubeconfig, exactly as kopf logs in anywhere; what it writes is counted by its own
`bookgen_operator_writes_total` (every write it sends, no-ops included) and by resourceVersions.
These tests keep the operator a process on this machine because they do what a pod forbids: put a
throttling proxy between it and the API server, SIGKILL one replica at an exact moment, run two
with chosen names. The queues' pods run on the real node all the same. The operator as users run it
(the chart's Deployment in pods) is tests/cluster/test_operator.py and test_real_node.py.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import yaml

from tests.cluster import secret_scan
from tests.cluster.audit import AuditLog
from tests.cluster.conftest import Cluster as ControlPlane
from tests.support.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "crds" / "bookgenqueue.yaml"
#: The user of the admin kubeconfig: the operator in these tests and the test itself write as it, so
#: the audit checks look only at windows in which the test writes nothing.
ADMIN_USER = "bookgen-test-admin"


def _kube() -> Any:
    from bookgen_operator.controller.client import Kube, Resource

    return Kube, Resource


@dataclass
class Cluster:
    kubeconfig: Path
    namespace: str
    kube: Any
    real: bool
    audit: AuditLog
    log_dir: Path
    control_plane: ControlPlane
    processes: list[Any] = field(default_factory=list)

    def image_digest(self, ref: str) -> str:
        """The manifest digest of an image on the real node (as a registry would serve it)."""
        from tests.cluster.node import manifest_digest

        st = self.control_plane.state
        return manifest_digest(self.control_plane.sandbox, Path(st.node_bin), ref)

    def res(self, group: str, version: str, plural: str, namespaced: bool = True) -> Any:
        return _kube()[1](group, version, plural, namespaced)

    async def start_operator(self, name: str = "op-a", *, leader_elect: bool = False,
                             interval: float = 2, env: dict[str, str] | None = None) -> Operator:
        metrics = free_port()
        args = [sys.executable, "-m", "bookgen_operator", "--namespace", self.namespace,
                "--metrics-port", str(metrics), "--liveness", f"http://127.0.0.1:{free_port()}/healthz"]
        if leader_elect:
            args += ["--leader-elect", "--lease-namespace", self.namespace]
        environ = {k: v for k, v in os.environ.items() if k != "BOOKGEN_KUBE_SERVER"}
        environ.update({"KUBECONFIG": str(self.kubeconfig), "BOOKGEN_AUTOSCALER": "off", "POD_NAME": name,
                        "BOOKGEN_RECONCILE_INTERVAL": str(interval), "POD_NAMESPACE": self.namespace, **(env or {})})
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("ab") as log:  # a file, not a pipe nobody drains (a full pipe blocks the operator)
            process = await asyncio.create_subprocess_exec(*args, env=environ, stdout=log, stderr=log)
        self.processes.append(process)
        return Operator(process, metrics, name, log_path)


@dataclass
class Operator:
    process: Any
    metrics_port: int
    name: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def _metric_sum(self, metric: str, labels: str = "") -> float:
        """The sum of one counter over its labels (those whose label text contains `labels`) on the
        operator's /metrics; -1 when it serves none."""
        async with httpx.AsyncClient() as client:
            try:
                text = (await client.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5)).text
            except httpx.HTTPError:
                return -1.0
        return sum(float(v) for found, v in re.findall(rf"^{metric}\{{([^}}]*)\}} (\S+)$", text, re.M)
                   if labels in found)

    async def writes(self) -> float:
        """The operator's own count of the writes it sent (all kinds, status included)."""
        return await self._metric_sum("bookgen_operator_writes_total")

    async def reconciles(self, trigger: str = "") -> float:
        """Reconciles so far; of one trigger only (timer, child, update, ...) when given."""
        return await self._metric_sum("bookgen_operator_reconciles_total", f'trigger="{trigger}"' if trigger else "")

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 30)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


async def _login(kubeconfig: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    import kopf

    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.delenv("BOOKGEN_KUBE_SERVER", raising=False)
    info = kopf.login_with_kubeconfig(settings=kopf.OperatorSettings(), logger=None)
    kube_cls, _ = _kube()
    return kube_cls(lambda: info)


async def _ensure_crd(cluster: Cluster) -> None:
    from bookgen_operator.controller.client import RESOURCES

    served = await cluster.kube._request("GET", "/apis")
    if "bookgen.io" in {g.get("name") for g in served.get("groups") or []}:
        return
    crds = cluster.res("apiextensions.k8s.io", "v1", "customresourcedefinitions", namespaced=False)
    await cluster.kube.create(crds, None, yaml.safe_load(CRD.read_text()))
    bgq = RESOURCES[("bookgen.io/v1alpha1", "BookGenQueue")]
    for _ in range(100):
        try:
            await cluster.kube.list(bgq, cluster.namespace)
            return
        except Exception:
            await asyncio.sleep(0.1)


@pytest_asyncio.fixture(name="cluster")
async def kube_target(cluster: ControlPlane, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Cluster]:
    namespace = f"bgq-{uuid.uuid4().hex[:8]}"
    kubeconfig = cluster.kubeconfig
    audit = cluster.audit
    kube = await _login(kubeconfig, monkeypatch)
    namespaces = _kube()[1]("", "v1", "namespaces", False)
    await kube.create(namespaces, None, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    c = Cluster(kubeconfig, namespace, kube, True, audit, tmp_path, cluster)
    await _ensure_crd(c)
    try:
        yield c
    finally:
        for process in c.processes:
            if process.returncode is None:
                process.kill()
                await process.wait()
        # The operators' logs (files of this test) and the namespace's pods and Events, before they go.
        secret_scan.scan_namespace(cluster, namespace)
        secret_scan.scan_texts(cluster, {str(log): log.read_text(errors="replace")
                                         for log in sorted(c.log_dir.glob("*.log"))}, "operator process logs")
        from bookgen_operator.controller.client import RESOURCES

        bgq = RESOURCES[("bookgen.io/v1alpha1", "BookGenQueue")]
        for obj in await kube.list(bgq, namespace):  # no operator left to release kopf's finalizer
            await kube.patch(bgq, namespace, obj["metadata"]["name"], {"metadata": {"finalizers": None}})
        try:
            await kube.delete(namespaces, None, namespace)
        finally:
            await kube.close()
