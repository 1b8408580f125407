"""A real Kubernetes cluster for the tests: etcd, kube-apiserver, kube-controller-manager and
kube-scheduler, and a real node (containerd + runc, the kubelet, kube-proxy, the CNI bridge, CoreDNS
and a volume provisioner as pods, kube-router enforcing NetworkPolicies: netpol_engine.py), all
inside a network namespace with no default route (sandbox.py).

    python -m tests.cluster.controlplane up --bin DIR --node-bin DIR --images DIR   # prints `export KUBECONFIG=...`
    python -m tests.cluster.controlplane up --bin DIR --node fake    # a stand-in node agent, for benchmarks
    python -m tests.cluster.controlplane down | status

The way in from this machine is a loopback port forwarded (socat, over a unix socket) to the
apiserver in the namespace; the admin kubeconfig points at it, and `kubectl logs/exec/port-forward`
work through it. A real node also has a container registry (registry.py, Debian's docker-registry), at
`localhost:PORT` both here and inside, for `scripts/release` and `helm install oci://`.
`--node fake` replaces the kubelet by node_agent.py (pods marked Running, nothing runs): only
bench.operator_scale uses it, for more pods than two cores can run.

State (PKI, etcd data, containerd's store, logs, kubeconfigs, the audit log) lives in `.cluster/` at
the repository root unless BOOKGEN_CLUSTER_DIR says otherwise. Processes outlive `up`; `down` stops
them by the cgroup they were put in and the PIDs recorded, never by name.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tests.cluster import addons, netpol_engine, node, registry
from tests.cluster.netcheck import dns_answers, netns_http_ok
from tests.cluster.sandbox import NODE_IP, SERVICE_CIDR, Sandbox, _alive, run, terminate

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
FAKE_NODE_NAMES = ("fake-node-0",)
API_PORT = 6443  # inside the namespace; the loopback port outside is chosen free
READY_TIMEOUT = 120.0
NODE_COMPONENTS = ("containerd", "kubelet", "kube-proxy", netpol_engine.NAME)
#: node.kubelet_config: healthzBindAddress and healthzPort, inside the namespace.
KUBELET_HEALTHZ = "http://127.0.0.1:10248/healthz"


def state_dir() -> Path:
    return Path(os.environ.get("BOOKGEN_CLUSTER_DIR") or ROOT / ".cluster").resolve()


@dataclass
class State:
    id: str
    bin_dir: str
    node: str = "real"
    node_bin: str = ""
    images: str = ""
    netpol_bin: str = ""
    ports: dict[str, int] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return f"https://127.0.0.1:{self.ports['api']}"

    @property
    def node_names(self) -> tuple[str, ...]:
        return (node.NODE_NAME,) if self.node == "real" else FAKE_NODE_NAMES

    def sandbox(self, d: Path) -> Sandbox:
        return Sandbox(self.id, d)

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
        return int(s.getsockname()[1])


alive = _alive


def kubeconfig_path(d: Path | None = None, user: str = "admin") -> Path:
    return (d or state_dir()) / "pki" / f"{user}.kubeconfig"


def write_kubeconfig(d: Path, server: str, user: str, cert: str | None = None) -> Path:
    pki = d / "pki"
    cert = cert or user
    path = kubeconfig_path(d, user)
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "bookgen-test",
                      "cluster": {"server": server, "certificate-authority": str(pki / "ca.crt")}}],
        "users": [{"name": user, "user": {"client-certificate": str(pki / f"{cert}.crt"),
                                          "client-key": str(pki / f"{cert}.key")}}],
        "contexts": [{"name": user, "context": {"cluster": "bookgen-test", "user": user}}],
        "current-context": user,
    }, indent=2))  # fmt: skip
    path.chmod(0o600)
    return path


def admin_ssl_context(d: Path) -> ssl.SSLContext:
    pki = d / "pki"
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    return ctx


def api_get(d: Path, st: State, path: str) -> dict[str, object] | None:
    import urllib.request

    try:
        with urllib.request.urlopen(f"{st.api_url}{path}", timeout=3, context=admin_ssl_context(d)) as r:
            return json.load(r)  # type: ignore[no-any-return]
    except Exception:
        return None


def wait_for(what: str, check: object, timeout: float = READY_TIMEOUT, pid: int | None = None,
             logfile: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        if pid is not None and not alive(pid):
            tail = logfile.read_text(errors="replace")[-3000:] if logfile and logfile.exists() else ""
            raise RuntimeError(f"{what} exited during start-up; last log lines:\n{tail}")
        time.sleep(0.2)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


def apiserver_args(d: Path) -> list[str]:
    pki = d / "pki"
    return [
        "--etcd-servers=http://127.0.0.1:2379",
        "--bind-address=0.0.0.0",
        f"--secure-port={API_PORT}",
        f"--advertise-address={NODE_IP}",
        f"--cert-dir={pki}",
        f"--tls-cert-file={pki / 'apiserver.crt'}",
        f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
        f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
        f"--kubelet-certificate-authority={pki / 'ca.crt'}",
        # Otherwise it resolves the node's name through this machine's resolver.
        "--kubelet-preferred-address-types=InternalIP",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--authorization-mode=Node,RBAC",
        "--allow-privileged=true",
        "--profiling=false",
        # PodSecurity is on by default; OwnerReferencesPermissionEnforcement is what OpenShift adds.
        "--enable-admission-plugins=OwnerReferencesPermissionEnforcement",
        # Aggregated APIs (a metrics adapter): the front proxy's client certificate and routing to endpoints.
        f"--requestheader-client-ca-file={pki / 'front-proxy-ca.crt'}",
        "--requestheader-allowed-names=front-proxy-client",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-username-headers=X-Remote-User",
        f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
        f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
        "--enable-aggregator-routing=true",
        f"--audit-policy-file={HERE / 'audit-policy.yaml'}",
        f"--audit-log-path={d / 'audit.log'}",
        "--audit-log-maxsize=0",
        "--v=1",
    ]


def up(bin_dir: Path, node_bin: Path | None = None, images: Path | None = None, node_kind: str = "real",
       netpol_bin: Path | None = None) -> State:
    d = state_dir()
    old = State.load(d)
    if old and healthy(d, old) and old.node == node_kind:
        if node_kind == "real" and images:
            refresh_images(d, old, images)
        if node_kind == "real" and "registry" not in old.pids:  # a cluster started before it had one
            _start_registry(d, old, old.sandbox(d))
        if node_kind == "real" and netpol_engine.NAME not in old.pids:  # one started before policies were enforced
            _start_netpol_engine(d, old, old.sandbox(d), netpol_engine.binary_dir(netpol_bin))
        log(f"already up at {old.api_url}")
        return old
    if old or (d / "state.json").exists():
        log("found a stale or partial cluster; removing it first")
        down()
    if node_kind == "real" and not (node_bin and images):
        raise RuntimeError("a real node needs --node-bin and --images (scripts/build-node.sh, scripts/build-images.sh)")
    for sub in ("logs", "pki", "etcd"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    if node_kind == "real":  # before anything starts: a cold build of it takes minutes
        netpol_bin = netpol_engine.binary_dir(netpol_bin)
    st = State(id=secrets.token_hex(3), bin_dir=str(bin_dir), node=node_kind, node_bin=str(node_bin or ""),
               images=str(images or ""), netpol_bin=str(netpol_bin or ""), ports={"api": free_port()})
    sb = st.sandbox(d)
    st.save(d)  # first, so that a crash from here on is cleaned up by the next up or down
    t0 = time.monotonic()
    try:
        sb.create()
        subprocess.run(["bash", str(HERE / "pki.sh"), str(d / "pki"), node.NODE_NAME, NODE_IP], check=True)
        _start_control_plane(d, st, sb)
        st.timings["control_plane"] = round(time.monotonic() - t0, 1)
        if node_kind == "real":
            _start_node(d, st, sb)
        else:
            _start_fake_node(d, st, sb)
        node_pids = [st.pids[c] for c in (*NODE_COMPONENTS, "agent") if c in st.pids]
        wait_for("a Ready node", lambda: _all_alive(st, node_pids) and nodes_ready(d, st), timeout=READY_TIMEOUT)
        st.timings["node_ready"] = round(time.monotonic() - t0, 1)
        if node_kind == "real":
            _start_addons(d, st)
            st.timings["dns_ready"] = round(time.monotonic() - t0, 1)
        st.save(d)
    except BaseException:
        # Nothing keeps running or stays mounted; the files stay for a look until the next up or down.
        st.sandbox(d).destroy(graceful=tuple(st.pids[c] for c in reversed(NODE_COMPONENTS) if c in st.pids))
        log(f"start-up failed; everything it started is stopped; logs are in {d / 'logs'}")
        raise
    log(f"up in {time.monotonic() - t0:.1f} s: {st.api_url} (node {', '.join(st.node_names)}; {st.timings})")
    return st


def _spawn(d: Path, st: State, sb: Sandbox, name: str, argv: list[str], **kw: object) -> int:
    pid = sb.spawn(name, argv, **kw)  # type: ignore[arg-type]
    st.pids[name] = pid
    st.save(d)
    return pid


def _forward(d: Path, st: State, sb: Sandbox, name: str, inside: int, outside: int) -> None:
    """The loopback way in: outside, a TCP listener on 127.0.0.1:`outside`; inside, the other end of a
    unix socket connecting to 127.0.0.1:`inside` in the namespace. No address but loopback is involved."""
    prefix = f"{name}-" if name else ""
    sock = sb.run_dir / f"{name or 'api'}.sock"
    _spawn(d, st, sb, f"{prefix}forward-in", ["socat", f"UNIX-LISTEN:{sock},fork,unlink-early,mode=600",
                                              f"TCP:127.0.0.1:{inside}"])
    wait_for("the forwarder's socket", sock.exists, timeout=10)
    _spawn(d, st, sb, f"{prefix}forward-out", ["socat", f"TCP-LISTEN:{outside},bind=127.0.0.1,fork,reuseaddr",
                                               f"UNIX-CONNECT:{sock}"], host=True)


def _start_registry(d: Path, st: State, sb: Sandbox) -> None:
    """The cluster's container registry (registry.py), on the same port number inside and outside."""
    port = st.ports.setdefault("registry", free_port())
    config = d / "registry.json"
    config.write_text(registry.config_text(d / "registry", port))
    pid = _spawn(d, st, sb, "registry", [str(Path(st.node_bin) / registry.BINARY), "serve", str(config)])
    _forward(d, st, sb, "registry", port, port)
    wait_for("the image registry", lambda: registry.answers(port), timeout=30, pid=pid,
             logfile=d / "logs" / "registry.log")


def _start_control_plane(d: Path, st: State, sb: Sandbox) -> None:
    b, pki, logs = Path(st.bin_dir), d / "pki", d / "logs"
    pid = _spawn(d, st, sb, "etcd", [
        str(b / "etcd"), "--name", "default", "--data-dir", str(d / "etcd"),
        "--listen-client-urls", "http://127.0.0.1:2379", "--advertise-client-urls", "http://127.0.0.1:2379",
        "--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
        "--initial-cluster", "default=http://127.0.0.1:2380", "--unsafe-no-fsync", "--log-level", "warn",
    ])  # fmt: skip
    wait_for("etcd", lambda: netns_http_ok(sb.netns_path, "http://127.0.0.1:2379/health"), pid=pid,
             logfile=logs / "etcd.log")
    pid = _spawn(d, st, sb, "apiserver", [str(b / "kube-apiserver"), *apiserver_args(d)])
    _forward(d, st, sb, "", API_PORT, st.ports["api"])
    wait_for("kube-apiserver /readyz", lambda: _readyz(d, st), pid=pid, logfile=logs / "apiserver.log")
    inside = f"https://127.0.0.1:{API_PORT}"
    write_kubeconfig(d, st.api_url, "admin")
    for user in ("kcm", "scheduler"):
        write_kubeconfig(d, inside, user)
    write_kubeconfig(d, f"https://{NODE_IP}:{API_PORT}", "kubelet", cert="kubelet-client")
    write_kubeconfig(d, f"https://{NODE_IP}:{API_PORT}", "kube-proxy")
    # kube-router watches pods, namespaces and policies in every namespace: the admin's certificate.
    write_kubeconfig(d, f"https://{NODE_IP}:{API_PORT}", netpol_engine.NAME, cert="admin")
    write_kubeconfig(d, st.api_url, "agent")
    kcm = kubeconfig_path(d, "kcm")
    _spawn(d, st, sb, "kcm", [
        str(b / "kube-controller-manager"), f"--kubeconfig={kcm}",
        f"--authentication-kubeconfig={kcm}", f"--authorization-kubeconfig={kcm}",
        "--use-service-account-credentials=true", f"--service-account-private-key-file={pki / 'sa.key'}",
        f"--root-ca-file={pki / 'ca.crt'}", f"--cluster-signing-cert-file={pki / 'ca.crt'}",
        f"--cluster-signing-key-file={pki / 'ca.key'}", "--controllers=*", "--leader-elect=false",
        "--concurrent-deployment-syncs=10", "--concurrent-replicaset-syncs=10",
        "--bind-address=127.0.0.1", "--secure-port=10257", "--v=1",
    ])  # fmt: skip
    sched = kubeconfig_path(d, "scheduler")
    _spawn(d, st, sb, "scheduler", [
        str(b / "kube-scheduler"), f"--kubeconfig={sched}", f"--authentication-kubeconfig={sched}",
        f"--authorization-kubeconfig={sched}", "--leader-elect=false", "--bind-address=127.0.0.1",
        "--secure-port=10259", "--v=1",
    ])  # fmt: skip
    for key, port in (("kcm", 10257), ("scheduler", 10259)):
        wait_for(key, lambda p=port: netns_http_ok(sb.netns_path, f"https://127.0.0.1:{p}/healthz"),
                 pid=st.pids[key], logfile=logs / f"{key}.log")


def _all_alive(st: State, pids: list[int]) -> bool:
    dead = [name for name, pid in st.pids.items() if pid in pids and not alive(pid)]
    if dead:
        raise RuntimeError(f"{', '.join(dead)} exited during start-up; see {state_dir() / 'logs'}")
    return True


def _readyz(d: Path, st: State) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"{st.api_url}/readyz", timeout=3, context=admin_ssl_context(d)) as r:
            return bool(r.status == 200)
    except Exception:
        return False


def _start_node(d: Path, st: State, sb: Sandbox) -> None:
    nb, logs = Path(st.node_bin), d / "logs"
    configs = node.write_configs(sb, {"kube-proxy": kubeconfig_path(d, "kube-proxy")})
    env = node.node_environment(nb, dict(os.environ))
    pid = _spawn(d, st, sb, "containerd", node.containerd_argv(nb, configs["containerd"]), mount=True, env=env)
    wait_for("containerd", node.containerd_socket(sb).exists, timeout=60, pid=pid, logfile=logs / "containerd.log")
    t = time.monotonic()
    node.import_images(sb, nb, Path(st.images))
    st.timings["image_import"] = round(time.monotonic() - t, 1)
    _start_registry(d, st, sb)
    _spawn(d, st, sb, "kubelet", node.kubelet_argv(sb, nb, configs["kubelet"], kubeconfig_path(d, "kubelet")),
           mount=True, env=env)
    _spawn(d, st, sb, "kube-proxy", node.kube_proxy_argv(nb, configs["kube-proxy"]), mount=True, env=env)
    _start_netpol_engine(d, st, sb, Path(st.netpol_bin))


def _start_netpol_engine(d: Path, st: State, sb: Sandbox, bin_dir: Path) -> None:
    """kube-router's policy controller (netpol_engine.py), in the node's namespaces like kube-proxy.
    It needs the Node object, so it waits for the kubelet to register it; up waits for it to be healthy."""
    wait_for("the node to register", lambda: api_get(d, st, f"/api/v1/nodes/{node.NODE_NAME}") is not None,
             timeout=READY_TIMEOUT, pid=st.pids.get("kubelet"), logfile=d / "logs" / "kubelet.log")
    if not kubeconfig_path(d, netpol_engine.NAME).exists():  # a cluster started before it had one
        write_kubeconfig(d, f"https://{NODE_IP}:{API_PORT}", netpol_engine.NAME, cert="admin")
    st.netpol_bin = str(bin_dir)
    pid = _spawn(d, st, sb, netpol_engine.NAME,
                 netpol_engine.argv(bin_dir, kubeconfig_path(d, netpol_engine.NAME), node.NODE_NAME), mount=True)
    wait_for("kube-router's policy controller", lambda: netns_http_ok(sb.netns_path, netpol_engine.HEALTH_URL),
             pid=pid, logfile=d / "logs" / f"{netpol_engine.NAME}.log")


def restart_kubelet(timeout: float = 60.0) -> float:
    """Stop the kubelet by its recorded PID (SIGTERM, as systemd would) and start it again with the
    same configuration, namespaces and cgroup; pods keep running meanwhile (containerd and the shims
    hold them). For chaos runs (bench/chaos.py). Returns the seconds until its health check answers."""
    d = state_dir()
    st = State.load(d)
    if st is None or st.node != "real" or "kubelet" not in st.pids:
        raise RuntimeError(f"no real node recorded in {d}")
    sb, nb = st.sandbox(d), Path(st.node_bin)
    t0 = time.monotonic()
    if terminate([st.pids["kubelet"]], timeout=30):
        raise RuntimeError(f"the kubelet (pid {st.pids['kubelet']}) did not stop on SIGTERM")
    argv = node.kubelet_argv(sb, nb, sb.state / "node" / "kubelet.json", kubeconfig_path(d, "kubelet"))
    pid = _spawn(d, st, sb, "kubelet", argv, mount=True, env=node.node_environment(nb, dict(os.environ)))
    wait_for("the restarted kubelet's health check", lambda: netns_http_ok(sb.netns_path, KUBELET_HEALTHZ),
             timeout=timeout, pid=pid, logfile=d / "logs" / "kubelet.log")
    return time.monotonic() - t0


def refresh_images(d: Path, st: State, images: Path) -> None:
    """Import what a rebuild of the images changed into a running node (the product's new build)."""
    new = node.import_images(st.sandbox(d), Path(st.node_bin), images)
    if new:
        log(f"imported {', '.join(new)}")
    if str(images) != st.images:
        st.images = str(images)
        st.save(d)


def _start_fake_node(d: Path, st: State, sb: Sandbox) -> None:
    _spawn(d, st, sb, "agent", [
        sys.executable, "-m", "tests.cluster.node_agent", "--kubeconfig", str(kubeconfig_path(d, "agent")),
        *[a for n in FAKE_NODE_NAMES for a in ("--node", n)],
    ], host=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)  # fmt: skip


def _start_addons(d: Path, st: State) -> None:
    data = d / "local-path"
    data.mkdir(exist_ok=True)
    body = "\n".join(json.dumps(m) for m in addons.manifests(data))
    kubectl = str(Path(sys.executable).parent / "kubectl")
    env = {**os.environ, "KUBECONFIG": str(kubeconfig_path(d))}
    subprocess.run([kubectl, "apply", "--server-side", "-f", "-"], input=body, text=True, check=True,
                   capture_output=True, env=env, timeout=120)
    sb = st.sandbox(d)
    wait_for("cluster DNS to answer", lambda: dns_answers(sb.netns_path, "kubernetes.default.svc.cluster.local"),
             timeout=READY_TIMEOUT)


def nodes_ready(d: Path, st: State) -> bool:
    """Every node Ready and without the not-ready taint (pods are scheduled only then)."""
    body = api_get(d, st, "/api/v1/nodes")
    if not body:
        return False
    ready = set()
    for n in body.get("items", []):  # type: ignore[union-attr]
        conds = {c["type"]: c["status"] for c in n.get("status", {}).get("conditions", [])}
        taints = {t["key"] for t in n.get("spec", {}).get("taints", []) or []}
        if conds.get("Ready") == "True" and "node.kubernetes.io/not-ready" not in taints:
            ready.add(n["metadata"]["name"])
    return set(st.node_names) <= ready


def healthy(d: Path, st: State) -> bool:
    try:
        return all(alive(p) for p in st.pids.values()) and _readyz(d, st) and nodes_ready(d, st)
    except (OSError, ssl.SSLError, KeyError):
        return False


def down() -> None:
    d = state_dir()
    st = State.load(d)
    if st:
        graceful = tuple(st.pids[c] for c in reversed(NODE_COMPONENTS) if c in st.pids)
        st.sandbox(d).destroy(graceful=graceful)
    if d.exists():
        # containerd's snapshots may hold read-only files; the mounts over them went with the namespace.
        run("rm", "-rf", "--one-file-system", str(d), check=False)
        shutil.rmtree(d, ignore_errors=True)
    log("down")


def status() -> int:
    d = state_dir()
    st = State.load(d)
    if not st:
        print(f"down (no state in {d})")
        return 1
    for c, pid in st.pids.items():
        print(f"{c:12} pid {pid:>7}  {'running' if alive(pid) else 'not running'}")
    ok = healthy(d, st)
    print(f"apiserver    {st.api_url}  {'ready' if ok else 'NOT ready'}  (namespace {st.sandbox(d).netns})")
    if ok:
        print(f"export KUBECONFIG={kubeconfig_path(d)}")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="scripts/cluster", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    u = sub.add_parser("up", help="start (or reuse) the cluster")
    u.add_argument("--bin", required=True, type=Path, help="folder with etcd and the kube-* binaries")
    u.add_argument("--node-bin", type=Path, help="folder of scripts/build-node.sh (kubelet, containerd, ...)")
    u.add_argument("--images", type=Path, help="folder of scripts/build-images.sh")
    u.add_argument("--node", choices=("real", "fake"), default="real")
    u.add_argument("--netpol-bin", type=Path, help="folder of scripts/build-kube-router.sh (default: "
                   "$BOOKGEN_NETPOL_BIN, else that script is run)")
    sub.add_parser("down", help="stop everything and remove the state folder")
    sub.add_parser("status", help="show what runs")
    args = p.parse_args(argv)
    if args.cmd == "up":
        try:
            up(args.bin, args.node_bin, args.images, args.node, args.netpol_bin)
        except (RuntimeError, subprocess.CalledProcessError) as e:
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
