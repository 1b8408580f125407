"""Install the chart with the real helm and run the real operator as the chart's ServiceAccount.

The operator's pod that `helm install` creates is only marked Running by the node agent; the
operator process itself runs here (`python -m bookgen_operator`), logged in with a token that the
TokenRequest API issued for the chart's ServiceAccount. So every call it makes is authorised by the
chart's own RBAC, and the audit log shows it as `system:serviceaccount:<ns>:<name>`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from kubernetes import client

from tests.cluster import api_calls
from tests.cluster.conftest import Cluster
from tests.support.redis_server import free_port
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "bookgen-operator"


def helm_binary() -> str:
    local = ROOT / ".tools" / "bin" / "helm"
    if not local.exists():
        subprocess.run(["bash", str(ROOT / "scripts" / "install-helm.sh")], check=True, capture_output=True)
    return str(local)


def helm(cluster: Cluster, *args: str) -> str:
    result = subprocess.run([helm_binary(), *args], capture_output=True, text=True, env=cluster.env(), timeout=300)
    if result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


@dataclass
class Install:
    namespace: str
    service_account: str

    @property
    def username(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"


def install_chart(cluster: Cluster, namespace: str, release: str, *values: str) -> Install:
    """`helm install` into `namespace`; the release name names every object (ClusterRoles are cluster-wide,
    so each test module uses its own release)."""
    sets = [a for v in (f"fullnameOverride={release}", *values) for a in ("--set", v)]
    helm(cluster, "install", release, str(CHART), "-n", namespace, *sets)
    return Install(namespace, release)


def stop_and_check(cluster: Cluster, install: Install, op: OperatorProcess) -> None:
    """Stop the operator; it must exit cleanly, never have been refused by RBAC, and its calls are recorded."""
    code = op.stop()
    assert code == 0, f"the operator did not stop cleanly ({code}):\n{op.log()[-3000:]}"
    assert not op.forbidden(), "the chart's RBAC refused the operator:\n" + "\n".join(op.forbidden())
    cluster.audit.settled_writes(install.username, since=op.audit_mark)
    api_calls.OBSERVED.update(cluster.audit.calls(install.username, since=op.audit_mark))


def uninstall_chart(cluster: Cluster, install: Install) -> None:
    helm(cluster, "uninstall", install.service_account, "-n", install.namespace, "--wait")


def token_kubeconfig(cluster: Cluster, install: Install, path: Path) -> Path:
    """A kubeconfig that authenticates with a fresh token for the chart's ServiceAccount."""
    token = client.CoreV1Api(cluster.api).create_namespaced_service_account_token(
        install.service_account, install.namespace, {"spec": {"expirationSeconds": 7200}}
    ).status.token
    ca = cluster.state_dir / "pki" / "ca.crt"
    server = json.loads(cluster.kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "operator",
        "clusters": [{"name": "c", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "c", "user": "operator"}}],
    }))  # fmt: skip
    path.chmod(0o600)
    return path


@dataclass
class OperatorProcess:
    proc: subprocess.Popen[bytes]
    log_path: Path
    liveness_url: str
    metrics_port: int
    extra: dict[str, str] = field(default_factory=dict)
    audit_mark: int = 0

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def forbidden(self) -> list[str]:
        """Lines where RBAC refused a call. A namespace being deleted refuses new objects with 403 too
        (NamespaceTerminating, e.g. kopf's events about an earlier test's queue): that is not RBAC."""
        return [line for line in self.log().splitlines()
                if ("Forbidden" in line or " 403" in line)
                and "NamespaceTerminating" not in line and "because it is being terminated" not in line]

    def metric_sum(self, metric: str) -> float:
        """The sum of one metric over its labels on the operator's /metrics."""
        from tests.support.metrics_scrape import scrape

        samples = scrape(f"http://127.0.0.1:{self.metrics_port}/metrics")
        return sum(v for (name, _labels), v in samples.items() if name == metric)

    def rss_mib(self) -> float:
        from tests.support.process_stats import rss_mib

        return rss_mib(self.proc.pid)

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_operator(kubeconfig: Path, log_path: Path, *args: str, env: dict[str, str] | None = None,
                   audit_mark: int = 0) -> OperatorProcess:
    liveness = f"http://127.0.0.1:{free_port()}/healthz"
    metrics_port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("BOOKGEN_KUBE_", "KUBERNETES_"))}
    full_env.update({"KUBECONFIG": str(kubeconfig), "BOOKGEN_RECONCILE_INTERVAL": "2", "PYTHONUNBUFFERED": "1",
                     **(env or {})})
    logf = open(log_path, "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [sys.executable, "-m", "bookgen_operator", f"--liveness={liveness}", f"--metrics-port={metrics_port}", *args],
        stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=full_env, cwd=ROOT,
    )
    logf.close()
    op = OperatorProcess(proc, log_path, liveness, metrics_port, audit_mark=audit_mark)
    import urllib.request

    def live() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"the operator exited ({proc.returncode}):\n{op.log()[-3000:]}")
        try:
            with urllib.request.urlopen(liveness, timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    wait_for(live, timeout=60, interval=0.2, what="the operator's liveness endpoint")
    return op
