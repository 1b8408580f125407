"""Real KEDA beside the test cluster: its operator and its metrics adapter (scripts/build-keda.sh) run as
processes inside the cluster's network namespace and cgroup, so the cluster's `down` stops them too.

    python -m bench.peers.keda start | stop | status
    python -m bench.peers.keda smoke [--items 20] [--min-replicas 1]      (bench/peers/keda_smoke.py)

Here, not in tests/cluster: only benchmarks use it (issue 25 puts our autoscaler beside KEDA + the HPA
on real pods); the test suite never starts KEDA, and its cold build (tens of minutes) is out of CI's
budget. It uses the harness of tests/cluster (the cluster's State and Sandbox) as bench/ modules do.

What it sets up, and why:
- identities: ServiceAccounts `keda-operator` and `keda-metrics-server` in namespace `keda`, logged in
  with TokenRequest tokens (a process is not a pod: nothing mounts one). The RBAC is KEDA's own, read
  from config/ of the pinned module (so it is the version's), with the metrics server's bindings
  (auth-delegator, the extension-apiserver-authentication reader) on its own account as KEDA's Helm
  chart does. The adapter needs nothing else: its provider holds a Kubernetes client but never calls
  it (the audit log of a smoke run shows only SubjectAccessReviews, that ConfigMap and /version);
- CRDs from the module's config/crd/bases: the four keda.sh kinds and the two eventing.keda.sh kinds,
  since the operator starts a controller for each kind and cannot start when one is missing;
- TLS: a CA of KEDA's own (what KEDA's cert rotation would make) signing one certificate for both ends
  of the operator-adapter gRPC link (mutual TLS; ca.crt, tls.crt and tls.key in one folder, as KEDA
  reads them) and for the adapter's serving port, under the name the apiserver checks
  (keda-metrics-apiserver.keda.svc);
- the adapter listens on the node address (an EndpointSlice refuses loopback); the
  `v1beta1.external.metrics.k8s.io` APIService names a selector-less Service whose hand-written
  EndpointSlice holds that address (the port name equals the Service's, which is how the apiserver
  matches them); the apiserver routes to endpoints (--enable-aggregator-routing) with its front-proxy
  client certificate;
- the operator's gRPC metrics service listens on 127.0.0.1 inside the namespace and the adapter dials
  it there (--metrics-service-address);
- the operator resolves names like a pod does: it runs in a mount namespace of its own where
  /etc/resolv.conf names the cluster's DNS (10.0.0.10), so a scaler's `redis.NS.svc.cluster.local`
  works, and no lookup goes to this machine's resolver.
The APIService exists only while the adapter serves: an unavailable aggregated API stalls namespace
deletion in the whole cluster (the namespace controller's discovery fails), so `stop` removes it first.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.cluster.controlplane import API_PORT, State, state_dir, wait_for
from tests.cluster.netcheck import netns_http_ok
from tests.cluster.sandbox import NODE_IP, _alive, terminate

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "tests" / "cluster" / "peers" / "keda"
BUILD_SCRIPT = ROOT / "scripts" / "build-keda.sh"
KUBECTL = str(Path(sys.executable).parent / "kubectl")

NAMESPACE = "keda"
OPERATOR_SA = "keda-operator"
ADAPTER_SA = "keda-metrics-server"
ADAPTER_SERVICE = "keda-metrics-apiserver"  # KEDA's name; the serving certificate is issued for it
APISERVICE = "v1beta1.external.metrics.k8s.io"
#: Every object made here carries it, so `stop` finds them all by label.
PART_OF = {"app.kubernetes.io/part-of": "bookgen-bench-keda"}
CLUSTER_DNS = "10.0.0.10"
TOKEN_HOURS = 24

# Ports inside the cluster's namespace, away from what the control plane and the node use there
# (6443 apiserver, 2379/2380 etcd, 10250-10259 kubelet, kube-proxy, kcm, scheduler).
GRPC_PORT = 9666  # KEDA's default for the metrics service
OPERATOR_METRICS_PORT = 18080
OPERATOR_PROBE_PORT = 18081
ADAPTER_SECURE_PORT = 16443
ADAPTER_METRICS_PORT = 18082  # the adapter binds it on every address of the namespace (no flag for the host)

START_TIMEOUT = 120.0


def log(msg: str) -> None:
    print(f"keda: {msg}", file=sys.stderr, flush=True)


def folder(d: Path) -> Path:
    """KEDA's files, under the cluster's state: `down` removes them with the rest."""
    return d / "peers" / "keda"


@dataclass
class Running:
    """What `start` left running, saved beside its files; stop uses the PIDs and nothing else."""

    bin_dir: str
    version: str
    pids: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @classmethod
    def load(cls, d: Path) -> Running | None:
        try:
            return cls(**json.loads((folder(d) / "state.json").read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def save(self, d: Path) -> None:
        (folder(d) / "state.json").write_text(json.dumps(asdict(self), indent=2))


# -- the pinned module ------------------------------------------------------------------------------


def keda_version() -> str:
    for line in (MODULE / "go.mod").read_text().splitlines():
        words = line.replace("require ", "").split()
        if len(words) >= 2 and words[0] == "github.com/kedacore/keda/v2":
            return words[1]
    raise RuntimeError(f"no github.com/kedacore/keda/v2 requirement in {MODULE / 'go.mod'}")


def module_dir() -> Path:
    """KEDA's module as the Go module cache holds it (the zip's tree, read-only): its config/ has the
    CRDs and RBAC of exactly the pinned version."""
    out = subprocess.run(["go", "mod", "download", "-json", f"github.com/kedacore/keda/v2@{keda_version()}"],
                         cwd=MODULE, capture_output=True, text=True, check=True, timeout=600)
    return Path(json.loads(out.stdout)["Dir"])


def build() -> Path:
    """scripts/build-keda.sh: the folder with keda-operator and keda-adapter (a warm run only checks)."""
    out = subprocess.run(["bash", str(BUILD_SCRIPT)], stdout=subprocess.PIPE, text=True, check=True)
    return Path(out.stdout.strip().splitlines()[-1])


# -- talking to the cluster -------------------------------------------------------------------------


def kubectl(d: Path, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(d / "pki" / "admin.kubeconfig")}
    result = subprocess.run([KUBECTL, *args], input=input, capture_output=True, text=True, env=env, timeout=180)
    if check and result.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
    return result


def apply(d: Path, objects: Iterable[dict[str, Any]]) -> None:
    body = "\n".join(json.dumps(o) for o in objects)
    kubectl(d, "apply", "--server-side", "--force-conflicts", "--field-manager=bookgen-bench-keda", "-f", "-",
            input=body)


def labelled(obj: dict[str, Any]) -> dict[str, Any]:
    obj.setdefault("metadata", {}).setdefault("labels", {}).update(PART_OF)
    return obj


# -- what KEDA needs in the cluster -----------------------------------------------------------------


def crds(src: Path) -> list[dict[str, Any]]:
    return [labelled(yaml.safe_load(f.read_text())) for f in sorted((src / "config" / "crd" / "bases").glob("*.yaml"))]


def _docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _subject(sa: str) -> list[dict[str, str]]:
    return [{"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}]


def rbac(src: Path) -> list[dict[str, Any]]:
    """KEDA's own roles of the pinned version. config/rbac is the operator's (ClusterRole and a Role
    in its namespace for leases and its certificate Secret); config/metrics-server binds the
    delegation roles, which KEDA's kustomize gives the operator's account and its Helm chart the
    metrics server's: here the metrics server's, so that each process has only what it uses."""
    out: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa, "namespace": NAMESPACE}}
        for sa in (OPERATOR_SA, ADAPTER_SA)
    ]
    for doc in _docs(src / "config" / "rbac" / "role.yaml") + _docs(src / "config" / "rbac" / "role_binding.yaml"):
        if doc["kind"] in ("ClusterRoleBinding", "RoleBinding"):
            doc["subjects"] = _subject(OPERATOR_SA)
        out.append(doc)
    for doc in _docs(src / "config" / "metrics-server" / "role.yaml"):
        out.append(doc)  # keda-external-metrics-reader, bound to the HPA controller below
    for doc in _docs(src / "config" / "metrics-server" / "role_binding.yaml"):
        if doc["metadata"]["name"] != "keda-hpa-controller-external-metrics":
            doc["subjects"] = _subject(ADAPTER_SA)
        out.append(doc)
    for doc in out:
        if doc["kind"] in ("Role", "RoleBinding", "ServiceAccount"):
            doc["metadata"].setdefault("namespace", NAMESPACE)
    return [labelled(doc) for doc in out]


def adapter_endpoint() -> list[dict[str, Any]]:
    """A Service without a selector and its EndpointSlice by hand: the adapter is a process on the
    node, not a pod, so no controller would make one."""
    return [labelled(o) for o in (
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": ADAPTER_SERVICE, "namespace": NAMESPACE},
         "spec": {"ports": [{"name": "https", "port": 443, "targetPort": ADAPTER_SECURE_PORT}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": f"{ADAPTER_SERVICE}-node", "namespace": NAMESPACE,
                      "labels": {"kubernetes.io/service-name": ADAPTER_SERVICE,
                                 "endpointslice.kubernetes.io/managed-by": "bookgen-bench-keda"}},
         "addressType": "IPv4",
         "endpoints": [{"addresses": [NODE_IP], "conditions": {"ready": True}}],
         "ports": [{"name": "https", "port": ADAPTER_SECURE_PORT, "protocol": "TCP"}]},
    )]  # fmt: skip


def apiservice(ca_bundle: bytes) -> dict[str, Any]:
    import base64

    return labelled({
        "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": {"name": APISERVICE},
        "spec": {"service": {"name": ADAPTER_SERVICE, "namespace": NAMESPACE, "port": 443},
                 "group": "external.metrics.k8s.io", "version": "v1beta1",
                 "caBundle": base64.b64encode(ca_bundle).decode(),
                 "groupPriorityMinimum": 100, "versionPriority": 100},
    })  # fmt: skip


# -- files: certificates and kubeconfigs ------------------------------------------------------------


def make_certs(certs: Path) -> None:
    """KEDA's CA and one certificate for server and client use, as KEDA's own cert rotation issues
    (names of both Services, the loopback address the adapter dials, the node address it serves on)."""
    if (certs / "tls.crt").exists():
        return
    certs.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=certs, check=True, capture_output=True, timeout=60)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "365", "-keyout", "ca.key",
            "-out", "ca.crt", "-subj", "/O=KEDAORG/CN=KEDA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    names = [f"{svc}.{NAMESPACE}.svc{suffix}" for svc in ("keda-operator", ADAPTER_SERVICE)
             for suffix in ("", ".cluster.local")]
    sans = ",".join([*(f"DNS:{n}" for n in names), "DNS:localhost", "IP:127.0.0.1", f"IP:{NODE_IP}"])
    (certs / "tls.ext").write_text(
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        f"extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName={sans}\n")
    openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", "tls.key", "-out", "tls.csr",
            "-subj", "/O=KEDAORG/CN=keda-operator")
    openssl("x509", "-req", "-sha256", "-days", "365", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "tls.crt", "-extfile", "tls.ext")
    for f in ("tls.csr", "tls.ext"):
        (certs / f).unlink()
    for f in ("ca.key", "tls.key"):
        (certs / f).chmod(0o600)


def token_kubeconfig(d: Path, sa: str) -> Path:
    """A kubeconfig for `sa` with a fresh TokenRequest token, for the apiserver on the namespace's
    loopback (the processes run inside it)."""
    token = kubectl(d, "create", "token", sa, "-n", NAMESPACE, f"--duration={TOKEN_HOURS}h").stdout.strip()
    path = folder(d) / f"{sa}.kubeconfig"
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "bookgen-test", "cluster": {"server": f"https://127.0.0.1:{API_PORT}",
                                                          "certificate-authority": str(d / "pki" / "ca.crt")}}],
        "users": [{"name": sa, "user": {"token": token}}],
        "contexts": [{"name": sa, "context": {"cluster": "bookgen-test", "user": sa}}],
        "current-context": sa,
    }, indent=2))  # fmt: skip
    path.chmod(0o600)
    return path


# -- the processes ----------------------------------------------------------------------------------


def operator_argv(bin_dir: Path, certs: Path, cadir: Path) -> list[str]:
    return [
        str(bin_dir / "keda-operator"), "--leader-elect=false", "--zap-log-level=info", "--zap-encoder=console",
        f"--metrics-bind-address=127.0.0.1:{OPERATOR_METRICS_PORT}",
        f"--health-probe-bind-address=127.0.0.1:{OPERATOR_PROBE_PORT}",
        f"--metrics-service-bind-address=127.0.0.1:{GRPC_PORT}",
        f"--cert-dir={certs}", f"--ca-dir={cadir}", "--enable-cert-rotation=false",
    ]  # fmt: skip


def adapter_argv(bin_dir: Path, certs: Path, kubeconfig: Path) -> list[str]:
    return [
        str(bin_dir / "keda-adapter"), "--zap-log-level=info", "--zap-encoder=console",
        f"--bind-address={NODE_IP}", f"--secure-port={ADAPTER_SECURE_PORT}", f"--cert-dir={certs}",
        f"--tls-cert-file={certs / 'tls.crt'}", f"--tls-private-key-file={certs / 'tls.key'}",
        f"--client-ca-file={certs / 'ca.crt'}",
        f"--lister-kubeconfig={kubeconfig}", f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        f"--metrics-service-address=127.0.0.1:{GRPC_PORT}", f"--port={ADAPTER_METRICS_PORT}",
    ]  # fmt: skip


def with_cluster_dns(argv: list[str], resolv: Path) -> list[str]:
    """argv in a mount namespace of its own whose /etc/resolv.conf names the cluster's DNS, as a
    pod's does. unshare and sh both exec, so the PID recorded is the program's."""
    script = f"mount --bind {shlex.quote(str(resolv))} /etc/resolv.conf && exec \"$@\""
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh", *argv]


def _env(kubeconfig: Path) -> dict[str, str]:
    # What KEDA's Deployments set; WATCH_NAMESPACE empty = every namespace.
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "KUBECONFIG": str(kubeconfig),
            "POD_NAMESPACE": NAMESPACE, "KEDA_CLUSTER_OBJECT_NAMESPACE": NAMESPACE, "WATCH_NAMESPACE": ""}


def apiservice_available(d: Path) -> bool:
    out = kubectl(d, "get", "apiservice", APISERVICE, "-o", "json", check=False)
    if out.returncode != 0:
        return False
    conds = json.loads(out.stdout).get("status", {}).get("conditions", [])
    return any(c.get("type") == "Available" and c.get("status") == "True" for c in conds)


def start(d: Path, st: State, bin_dir: Path) -> Running:
    """KEDA's operator and adapter running and the external metrics API Available; idempotent."""
    old = Running.load(d)
    if old and all(_ours(pid, old.bin_dir) for pid in old.pids.values()) and apiservice_available(d):
        log(f"already running (pids {old.pids})")
        return old
    if old:
        stop(d)
    t0 = time.monotonic()
    src = module_dir()
    home = folder(d)
    certs, cadir = home / "certs", home / "custom-ca"
    for sub in (certs, cadir):
        sub.mkdir(parents=True, exist_ok=True)
    make_certs(certs)
    resolv = home / "resolv.conf"
    resolv.write_text(f"nameserver {CLUSTER_DNS}\nsearch {NAMESPACE}.svc.cluster.local svc.cluster.local "
                      "cluster.local\noptions ndots:5\n")
    apply(d, [labelled({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})])
    apply(d, crds(src))
    apply(d, rbac(src))
    apply(d, adapter_endpoint())
    for name in ("scaledobjects.keda.sh", "scaledjobs.keda.sh", "triggerauthentications.keda.sh",
                 "clustertriggerauthentications.keda.sh", "cloudeventsources.eventing.keda.sh",
                 "clustercloudeventsources.eventing.keda.sh"):
        kubectl(d, "wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")
    run = Running(bin_dir=str(bin_dir), version=keda_version())
    home.mkdir(parents=True, exist_ok=True)
    run.save(d)  # first, so that a failed start is stopped by the next start or stop
    sb = st.sandbox(d)
    try:
        op_kc = token_kubeconfig(d, OPERATOR_SA)
        run.pids["operator"] = sb.spawn("keda-operator", with_cluster_dns(operator_argv(bin_dir, certs, cadir), resolv),
                                        env=_env(op_kc))
        run.save(d)
        wait_for("the KEDA operator's /readyz",
                 lambda: netns_http_ok(sb.netns_path, f"http://127.0.0.1:{OPERATOR_PROBE_PORT}/readyz"),
                 timeout=START_TIMEOUT, pid=run.pids["operator"], logfile=d / "logs" / "keda-operator.log")
        run.timings["operator_ready"] = round(time.monotonic() - t0, 1)
        ad_kc = token_kubeconfig(d, ADAPTER_SA)
        run.pids["adapter"] = sb.spawn("keda-adapter", adapter_argv(bin_dir, certs, ad_kc), env=_env(ad_kc))
        run.save(d)
        wait_for("the KEDA metrics adapter's /readyz",
                 lambda: netns_http_ok(sb.netns_path, f"https://{NODE_IP}:{ADAPTER_SECURE_PORT}/readyz"),
                 timeout=START_TIMEOUT, pid=run.pids["adapter"], logfile=d / "logs" / "keda-adapter.log")
        # Registered only now that the adapter serves (see the module's docstring).
        apply(d, [apiservice((certs / "ca.crt").read_bytes())])
        wait_for("the external metrics APIService to be Available", lambda: apiservice_available(d),
                 timeout=START_TIMEOUT, pid=run.pids["adapter"], logfile=d / "logs" / "keda-adapter.log")
        run.timings["adapter_available"] = round(time.monotonic() - t0, 1)
        run.save(d)
    except BaseException:
        stop(d)
        raise
    log(f"KEDA {run.version} up in {time.monotonic() - t0:.1f} s (pids {run.pids}; logs in {d / 'logs'})")
    return run


def _ours(pid: int, bin_dir: str) -> bool:
    """The PID is alive and is still the KEDA binary started here (not a reused number)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return _alive(pid) and any(arg.startswith(bin_dir.encode()) for arg in cmdline)


def stop(d: Path, timeout: float = 15.0) -> None:
    """Remove the APIService first (see the module's docstring), stop the recorded PIDs, then delete
    every object labelled as ours. The cluster's `down` does the same to the processes by cgroup."""
    selector = ",".join(f"{k}={v}" for k, v in PART_OF.items())
    kubectl(d, "delete", "apiservice", APISERVICE, "--ignore-not-found", "--wait=false", check=False)
    # ScaledObjects and ScaledJobs carry KEDA's finalizer: deleted while the operator still runs, it
    # removes its HPAs and the finalizers; whatever is left afterwards would hold up the CRDs' deletion.
    if kubectl(d, "get", "crd", "scaledobjects.keda.sh", check=False).returncode == 0:
        kubectl(d, "delete", "scaledobjects.keda.sh,scaledjobs.keda.sh", "--all", "-A", "--timeout=60s", check=False)
    run = Running.load(d)
    if run:
        pids = [pid for pid in run.pids.values() if _ours(pid, run.bin_dir)]
        for pid in terminate(pids, timeout):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        (folder(d) / "state.json").unlink(missing_ok=True)
    _drop_finalizers(d)
    kubectl(d, "delete", "clusterrolebinding,clusterrole", "-l", selector, "--ignore-not-found", check=False)
    kubectl(d, "delete", "rolebinding", "-n", "kube-system", "-l", selector, "--ignore-not-found", check=False)
    kubectl(d, "delete", "namespace", NAMESPACE, "--ignore-not-found", "--timeout=120s", check=False)
    kubectl(d, "delete", "crd", "-l", selector, "--ignore-not-found", "--timeout=120s", check=False)
    log("stopped")


def _drop_finalizers(d: Path) -> None:
    """KEDA objects the operator did not get to finish: nothing runs to remove their finalizer now."""
    out = kubectl(d, "get", "scaledobjects.keda.sh,scaledjobs.keda.sh", "-A", "-o", "json", check=False)
    if out.returncode != 0:
        return
    for item in json.loads(out.stdout).get("items", []):
        meta = item["metadata"]
        kind = f"{item['kind'].lower()}s.keda.sh"
        kubectl(d, "patch", kind, meta["name"], "-n", meta["namespace"], "--type=merge",
                "-p", '{"metadata":{"finalizers":null}}', check=False)


def running(d: Path) -> bool:
    run = Running.load(d)
    return bool(run and run.pids and all(_ours(p, run.bin_dir) for p in run.pids.values())
                and apiservice_available(d))


def status(d: Path) -> int:
    run = Running.load(d)
    if not run:
        print("not running")
        return 1
    for name, pid in run.pids.items():
        print(f"{name:10} pid {pid:>7}  {'running' if _ours(pid, run.bin_dir) else 'not running'}")
    ok = apiservice_available(d)
    print(f"{APISERVICE}  {'Available' if ok else 'NOT available'}")
    return 0 if ok and all(_ours(p, run.bin_dir) for p in run.pids.values()) else 1


def cluster(d: Path) -> State:
    st = State.load(d)
    if not st or st.node != "real":
        raise SystemExit(f"keda: no real cluster in {d} (python -m tests.cluster.controlplane status)")
    return st


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.peers.keda", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("start", help="start KEDA beside the running cluster (builds it first if needed)")
    s.add_argument("--bin", type=Path, help="folder of scripts/build-keda.sh (default: run it)")
    sub.add_parser("stop", help="stop KEDA and remove everything it added to the cluster")
    sub.add_parser("status")
    sm = sub.add_parser("smoke", help="KEDA + the HPA scale a Deployment from a Redis list, timed")
    from bench.peers import keda_smoke

    keda_smoke.add_arguments(sm)
    args = p.parse_args(argv)
    d = state_dir()
    if args.cmd == "stop":
        stop(d)
        return 0
    if args.cmd == "status":
        return status(d)
    st = cluster(d)
    if args.cmd == "start":
        start(d, st, args.bin or build())
        return 0
    return keda_smoke.run(d, st, args)


if __name__ == "__main__":
    sys.exit(main())
