"""A real Kubernetes control plane as plain processes on loopback: etcd, kube-apiserver,
kube-controller-manager, kube-scheduler and our node agent (the one stand-in, for the kubelet).

    python -m tests.cluster.controlplane up --bin DIR    # prints `export KUBECONFIG=...` last
    python -m tests.cluster.controlplane down | status

State (PKI, etcd data, logs, pid files, kubeconfigs, the audit log) lives in one folder, `.cluster/`
at the repository root unless BOOKGEN_CLUSTER_DIR says otherwise. Processes run in their own
sessions so they outlive `up`; `down` stops them by the pids it recorded, never by name.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
NODE_NAMES = ("fake-node-0",)
#: Order matters: started in this order, stopped in the reverse.
COMPONENTS = ("etcd", "apiserver", "kcm", "scheduler", "agent")
READY_TIMEOUT = 120.0


def state_dir() -> Path:
    return Path(os.environ.get("BOOKGEN_CLUSTER_DIR") or ROOT / ".cluster").resolve()


@dataclass
class State:
    bin_dir: str
    ports: dict[str, int]
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return f"https://127.0.0.1:{self.ports['api']}"

    @classmethod
    def load(cls, d: Path) -> State | None:
        try:
            return cls(**json.loads((d / "state.json").read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def save(self, d: Path) -> None:
        (d / "state.json").write_text(json.dumps(asdict(self), indent=2))


def log(msg: str) -> None:
    print(f"cluster: {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours is not running.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


def kubeconfig_path(d: Path | None = None, user: str = "admin") -> Path:
    return (d or state_dir()) / "pki" / f"{user}.kubeconfig"


def write_kubeconfig(d: Path, st: State, user: str) -> Path:
    pki = d / "pki"
    path = kubeconfig_path(d, user)
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "bookgen-test",
                              "cluster": {"server": st.api_url, "certificate-authority": str(pki / "ca.crt")}}],
                "users": [{"name": user, "user": {"client-certificate": str(pki / f"{user}.crt"),
                                                  "client-key": str(pki / f"{user}.key")}}],
                "contexts": [{"name": user, "context": {"cluster": "bookgen-test", "user": user}}],
                "current-context": user,
            },
            indent=2,
        )
    )
    path.chmod(0o600)
    return path


def admin_ssl_context(d: Path) -> ssl.SSLContext:
    pki = d / "pki"
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    return ctx


def http_ok(url: str, ctx: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=ctx) as r:
            return r.status == 200
    except Exception:
        return False


def wait_for(what: str, check: Callable[[], bool], timeout: float = READY_TIMEOUT, pid: int | None = None,
             logfile: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if pid is not None and not alive(pid):
            tail = logfile.read_text()[-3000:] if logfile and logfile.exists() else ""
            raise RuntimeError(f"{what} exited during start-up; last log lines:\n{tail}")
        time.sleep(0.25)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


def spawn(d: Path, name: str, argv: list[str], env: dict[str, str] | None = None) -> int:
    logf = open(d / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, env=env, cwd=d
    )
    logf.close()
    return proc.pid


def advertise_address() -> str:
    """Any non-loopback unicast address: the apiserver rejects loopback for its own Endpoints."""
    try:
        out = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=5).stdout.split()
    except (OSError, subprocess.SubprocessError):
        out = []
    return next((a for a in out if "." in a and not a.startswith("127.")), "192.0.2.10")


def apiserver_args(d: Path, st: State) -> list[str]:
    pki = d / "pki"
    return [
        f"--etcd-servers=http://127.0.0.1:{st.ports['etcd']}",
        "--bind-address=127.0.0.1",
        f"--secure-port={st.ports['api']}",
        f"--advertise-address={advertise_address()}",
        f"--cert-dir={pki}",
        f"--tls-cert-file={pki / 'apiserver.crt'}",
        f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        "--service-cluster-ip-range=10.0.0.0/24",
        "--authorization-mode=Node,RBAC",
        "--allow-privileged=true",
        "--profiling=false",
        # PodSecurity is on by default; OwnerReferencesPermissionEnforcement is what OpenShift adds.
        "--enable-admission-plugins=OwnerReferencesPermissionEnforcement",
        f"--audit-policy-file={HERE / 'audit-policy.yaml'}",
        f"--audit-log-path={d / 'audit.log'}",
        "--audit-log-maxsize=0",
        "--v=1",
    ]


def up(bin_dir: Path) -> State:
    d = state_dir()
    old = State.load(d)
    if old and all(alive(old.pids.get(c, -1)) for c in COMPONENTS) and healthy(d, old):
        log(f"already up at {old.api_url}")
        return old
    if old:
        log("found a stale or partial control plane; stopping it first")
        down()
    for sub in ("logs", "pki", "etcd"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    subprocess.run(["bash", str(HERE / "pki.sh"), str(d / "pki")], check=True)
    ports = {k: free_port() for k in ("etcd", "peer", "api", "kcm", "scheduler")}
    st = State(bin_dir=str(bin_dir), ports=ports)
    t0 = time.monotonic()
    b = Path(bin_dir)
    pki = d / "pki"
    try:
        st.pids["etcd"] = spawn(d, "etcd", [
            str(b / "etcd"), "--name", "default", "--data-dir", str(d / "etcd"),
            "--listen-client-urls", f"http://127.0.0.1:{ports['etcd']}",
            "--advertise-client-urls", f"http://127.0.0.1:{ports['etcd']}",
            "--listen-peer-urls", f"http://127.0.0.1:{ports['peer']}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{ports['peer']}",
            "--initial-cluster", f"default=http://127.0.0.1:{ports['peer']}",
            "--unsafe-no-fsync", "--log-level", "warn",
        ])  # fmt: skip
        st.save(d)
        wait_for("etcd", lambda: http_ok(f"http://127.0.0.1:{ports['etcd']}/health"), pid=st.pids["etcd"],
                 logfile=d / "logs" / "etcd.log")
        st.pids["apiserver"] = spawn(d, "apiserver", [str(b / "kube-apiserver"), *apiserver_args(d, st)])
        st.save(d)
        ctx = admin_ssl_context(d)
        wait_for("kube-apiserver /readyz", lambda: http_ok(f"{st.api_url}/readyz", ctx), pid=st.pids["apiserver"],
                 logfile=d / "logs" / "apiserver.log")
        for user in ("admin", "kcm", "scheduler", "agent"):
            write_kubeconfig(d, st, user)
        kcm = kubeconfig_path(d, "kcm")
        st.pids["kcm"] = spawn(d, "kcm", [
            str(b / "kube-controller-manager"), f"--kubeconfig={kcm}",
            f"--authentication-kubeconfig={kcm}", f"--authorization-kubeconfig={kcm}",
            "--use-service-account-credentials=true", f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}", f"--cluster-signing-cert-file={pki / 'ca.crt'}",
            f"--cluster-signing-key-file={pki / 'ca.key'}",
            "--controllers=*,-horizontal-pod-autoscaler-controller", "--leader-elect=false",
            # The agent marks pods Ready at once: give the deployment controller no reason to wait.
            "--concurrent-deployment-syncs=10", "--concurrent-replicaset-syncs=10",
            "--bind-address=127.0.0.1", f"--secure-port={ports['kcm']}", "--v=1",
        ])  # fmt: skip
        sched = kubeconfig_path(d, "scheduler")
        st.pids["scheduler"] = spawn(d, "scheduler", [
            str(b / "kube-scheduler"), f"--kubeconfig={sched}", f"--authentication-kubeconfig={sched}",
            f"--authorization-kubeconfig={sched}", "--leader-elect=false", "--bind-address=127.0.0.1",
            f"--secure-port={ports['scheduler']}", "--v=1",
        ])  # fmt: skip
        st.pids["agent"] = spawn(
            d,
            "agent",
            [sys.executable, "-m", "tests.cluster.node_agent", "--kubeconfig", str(kubeconfig_path(d, "agent")),
             *[a for n in NODE_NAMES for a in ("--node", n)]],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        st.save(d)
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        for name, port in (("kube-controller-manager", ports["kcm"]), ("kube-scheduler", ports["scheduler"])):
            key = "kcm" if name.endswith("manager") else "scheduler"
            wait_for(name, lambda p=port: http_ok(f"https://127.0.0.1:{p}/healthz", insecure), pid=st.pids[key],
                     logfile=d / "logs" / f"{key}.log")
        wait_for("a Ready node", lambda: nodes_ready(d, st), pid=st.pids["agent"], logfile=d / "logs" / "agent.log")
    except BaseException:
        log(f"start-up failed; logs are in {d / 'logs'}")
        stop_processes(st)
        raise
    log(f"up in {time.monotonic() - t0:.1f} s: {st.api_url}, nodes {', '.join(NODE_NAMES)}")
    return st


def nodes_ready(d: Path, st: State) -> bool:
    """Every node Ready and without the not-ready taint (pods are scheduled only then)."""
    try:
        req = urllib.request.Request(f"{st.api_url}/api/v1/nodes")
        with urllib.request.urlopen(req, timeout=3, context=admin_ssl_context(d)) as r:
            items = json.load(r)["items"]
    except Exception:
        return False
    ready = set()
    for n in items:
        conds = {c["type"]: c["status"] for c in n.get("status", {}).get("conditions", [])}
        taints = {t["key"] for t in n.get("spec", {}).get("taints", []) or []}
        if conds.get("Ready") == "True" and "node.kubernetes.io/not-ready" not in taints:
            ready.add(n["metadata"]["name"])
    return set(NODE_NAMES) <= ready


def healthy(d: Path, st: State) -> bool:
    try:
        return http_ok(f"{st.api_url}/readyz", admin_ssl_context(d)) and nodes_ready(d, st)
    except (OSError, ssl.SSLError):
        return False


def stop_processes(st: State, timeout: float = 20.0) -> None:
    for name in reversed(COMPONENTS):
        pid = st.pids.get(name)
        if not pid or not alive(pid):
            continue
        try:
            os.killpg(pid, signal.SIGTERM)  # each component leads its own session
        except ProcessLookupError:
            continue
        deadline = time.monotonic() + timeout
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if alive(pid):
            os.killpg(pid, signal.SIGKILL)
            while alive(pid):
                time.sleep(0.05)
        with contextlib.suppress(ChildProcessError):  # reap it if it is our child (the pytest fixture's case)
            os.waitpid(pid, os.WNOHANG)


def down() -> None:
    d = state_dir()
    st = State.load(d)
    if st:
        stop_processes(st)
    if d.exists():
        shutil.rmtree(d, ignore_errors=True)
    log("down")


def status() -> int:
    d = state_dir()
    st = State.load(d)
    if not st:
        print(f"down (no state in {d})")
        return 1
    for c in COMPONENTS:
        pid = st.pids.get(c)
        print(f"{c:10} pid {pid or '-':>7}  {'running' if pid and alive(pid) else 'not running'}")
    ok = healthy(d, st)
    print(f"apiserver  {st.api_url}  {'ready' if ok else 'NOT ready'}")
    if ok:
        print(f"export KUBECONFIG={kubeconfig_path(d)}")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="scripts/cluster", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    u = sub.add_parser("up", help="start (or reuse) the control plane")
    u.add_argument("--bin", required=True, type=Path, help="folder with etcd and the kube-* binaries")
    sub.add_parser("down", help="stop everything and remove the state folder")
    sub.add_parser("status", help="show what runs")
    args = p.parse_args(argv)
    if args.cmd == "up":
        try:
            up(args.bin)
        except RuntimeError as e:
            print(f"cluster: {e}", file=sys.stderr)
            return 1
        print(f"export KUBECONFIG={kubeconfig_path()}")
        return 0
    if args.cmd == "down":
        down()
        return 0
    return status()


if __name__ == "__main__":
    sys.exit(main())
