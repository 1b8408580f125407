"""The private corner of this machine that one test cluster lives in, made and removed by path and PID.

Everything the cluster makes outside its state folder is named after its id and listed here:
- a network namespace `bk8s-<id>` with no default route: node, pod and Service addresses (10.x) exist
  only in it, so no packet to them can leave the machine; this machine's own namespace gets no
  bridge, route, firewall rule or sysctl;
- a cgroup `/bk8s-<id>` in every v1 hierarchy: the kubelet's `cgroupRoot`, and `system/` below it
  holds every process of the cluster, so teardown finds them all (containerd shims outlive
  containerd) and kills them frozen, by PID, never by name;
- a run folder `/run/bk8s-<id>` (short: unix socket paths stop at 107 bytes), bind-mounted on itself
  and private, pinning a private mount namespace at `mnt`: in it the kubelet's hard-coded
  `/var/lib/kubelet` and `/var/lib/cni` are bind mounts of folders under the state folder, and the
  six kernel tunables that the kubelet checks (`protectKernelDefaults`) are read-only files bound
  over `/proc/sys`, so no machine-wide sysctl is ever written; containers still see the real values
  (runc mounts a fresh procfs).
`destroy()` removes all of that, also after a crash (a later `up` calls it with the recorded id).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

CGROUP_FS = Path("/sys/fs/cgroup")
#: The v1 hierarchies the kubelet and runc use; missing ones (hugetlb on some kernels) are skipped.
HIERARCHIES = ("cpu", "cpuacct", "cpuset", "memory", "pids", "systemd", "blkio", "devices", "freezer")
#: In "hybrid" mode runc also mirrors every container's cgroup in the v2 tree mounted here: nothing
#: of ours joins it, but teardown must remove what runc made there too.
UNIFIED = "unified"
NODE_CIDR = "10.250.0.0/24"
NODE_IP = "10.250.0.10"
SERVICE_CIDR = "10.0.0.0/24"
POD_CIDR = "10.244.0.0/24"
NODE_DEVICE = "bk8s0"
#: What the kubelet insists on (with protectKernelDefaults it only reads them).
KERNEL_TUNABLES = {
    "vm/overcommit_memory": "1",
    "vm/panic_on_oom": "0",
    "kernel/panic": "10",
    "kernel/panic_on_oops": "1",
    "kernel/keys/root_maxkeys": "1000000",
    "kernel/keys/root_maxbytes": "25000000",
}
#: Hard-coded in the kubelet and the CNI plugins; bind-mounted inside the private mount namespace.
HOST_MOUNT_POINTS = (Path("/var/lib/kubelet"), Path("/var/lib/cni"))


def run(*argv: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, input=input, timeout=60)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def terminate(pids: Iterable[int], timeout: float) -> list[int]:
    """SIGTERM to each of `pids`, then wait up to `timeout` seconds for them to exit; returns those
    still alive (the caller decides how to end them)."""
    pids = list(pids)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [p for p in pids if _alive(p)]


@dataclass(frozen=True)
class Sandbox:
    id: str
    state: Path

    @property
    def netns(self) -> str:
        return f"bk8s-{self.id}"

    @property
    def netns_path(self) -> Path:
        return Path("/run/netns") / self.netns

    @property
    def run_dir(self) -> Path:
        return Path(f"/run/bk8s-{self.id}")

    @property
    def mntns_path(self) -> Path:
        return self.run_dir / "mnt"

    @property
    def cgroup_name(self) -> str:
        return f"bk8s-{self.id}"

    def cgroup_dirs(self) -> list[Path]:
        return [CGROUP_FS / h / self.cgroup_name for h in HIERARCHIES if (CGROUP_FS / h).is_dir()]

    def all_cgroup_dirs(self) -> list[Path]:
        """Every tree of ours: the v1 hierarchies we made and the v2 mirror runc makes."""
        unified = CGROUP_FS / UNIFIED
        return [*self.cgroup_dirs(), *([unified / self.cgroup_name] if unified.is_dir() else [])]

    # -- making it ------------------------------------------------------------------------------------

    def create(self) -> None:
        self._create_netns()
        self._create_cgroups()
        self._create_mount_namespace()

    def _create_netns(self) -> None:
        run("ip", "netns", "add", self.netns)
        inside = ("ip", "-n", self.netns)
        run(*inside, "link", "set", "lo", "up")
        # This kernel has no `dummy` driver; an ifb device holds the node address just as well.
        run(*inside, "link", "add", NODE_DEVICE, "type", "ifb")
        run(*inside, "addr", "add", f"{NODE_IP}/24", "dev", NODE_DEVICE)
        run(*inside, "link", "set", NODE_DEVICE, "up")
        # Service addresses need a route for the first lookup before kube-proxy's DNAT; there is no default.
        run(*inside, "route", "add", SERVICE_CIDR, "dev", NODE_DEVICE)
        for key in ("net.ipv4.ip_forward=1", "net.bridge.bridge-nf-call-iptables=1"):  # per namespace
            self.nsexec("sysctl", "-q", "-w", key)

    def _create_cgroups(self) -> None:
        for d in self.cgroup_dirs():
            (d / "system").mkdir(parents=True, exist_ok=True)
            if d.parent.name == "cpuset":  # an empty cpuset admits no task
                for sub in (d, d / "system"):
                    for f in ("cpuset.cpus", "cpuset.mems"):
                        (sub / f).write_text((d.parent / f).read_text())

    def _create_mount_namespace(self) -> None:
        self.run_dir.mkdir(mode=0o700, exist_ok=True)
        # A persistent mount namespace is pinned by a bind mount of its nsfs file; that file must live
        # on a private mount, or the pin would propagate into the namespace itself.
        run("mount", "--bind", str(self.run_dir), str(self.run_dir))
        run("mount", "--make-private", str(self.run_dir))
        self.mntns_path.touch()
        run("unshare", f"--mount={self.mntns_path}", "--propagation", "slave", "true")
        covers = self.state / "sysctl-covers"
        covers.mkdir(parents=True, exist_ok=True)
        script = ["set -e"]
        for key, value in KERNEL_TUNABLES.items():
            f = covers / key.replace("/", ".")
            f.write_text(value + "\n")
            f.chmod(0o444)
            script.append(f"mount --bind -o ro {f} /proc/sys/{key}")
        for point in HOST_MOUNT_POINTS:
            point.mkdir(parents=True, exist_ok=True)
            source = self.state / "varlib" / point.name
            source.mkdir(parents=True, exist_ok=True)
            script.append(f"mount --bind {source} {point}")
        run("nsenter", f"--mount={self.mntns_path}", "sh", "-c", "\n".join(script))

    # -- running in it --------------------------------------------------------------------------------

    def argv(self, argv: list[str], mount: bool = False, host: bool = False) -> list[str]:
        """`argv` run inside the network namespace (and the private mount namespace when `mount`;
        as it is when `host`). nsenter execs the program, so the PID recorded is the program's own."""
        if host:
            return argv
        ns = [f"--net={self.netns_path}", *([f"--mount={self.mntns_path}"] if mount else [])]
        return ["nsenter", *ns, "--", *argv]

    def nsexec(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(*self.argv(list(argv)), check=check)

    def join_cgroup(self) -> None:
        """Run in a child before exec (Popen's preexec_fn): put it in `system/` of every hierarchy."""
        pid = str(os.getpid())
        for d in self.cgroup_dirs():
            (d / "system" / "cgroup.procs").write_text(pid)

    def spawn(self, name: str, argv: list[str], *, mount: bool = False, host: bool = False,
              env: dict[str, str] | None = None, cwd: Path | None = None) -> int:
        """Start `argv` in its own session, in the cluster's cgroup (so teardown finds it and all it
        starts), logging to logs/<name>.log; in this machine's namespaces only when `host`."""
        logf = open(self.state / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen(
            self.argv(argv, mount, host), stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env=env, cwd=cwd or self.state, preexec_fn=self.join_cgroup,
        )
        logf.close()
        return proc.pid

    # -- what is ours -------------------------------------------------------------------------------

    def pids(self) -> set[int]:
        """Every process in the cluster's cgroups: its components, shims, and every container."""
        found: set[int] = set()
        for d in self.all_cgroup_dirs():
            if d.exists():
                for procs in d.rglob("cgroup.procs"):
                    with contextlib.suppress(OSError):
                        found |= {int(p) for p in procs.read_text().split()}
        return found

    def exists(self) -> bool:
        return self.netns_path.exists() or self.run_dir.exists() or any(d.exists() for d in self.all_cgroup_dirs())

    # -- removing it --------------------------------------------------------------------------------

    def destroy(self, graceful: tuple[int, ...] = (), timeout: float = 10.0) -> None:
        """Stop every process (SIGTERM to `graceful` first, then the whole cgroup tree frozen and
        killed), then remove the mounts, the run folder, the cgroups and the network namespace."""
        terminate(graceful, timeout)
        self._kill_cgroup_tree(deadline=time.monotonic() + timeout)
        if self.mntns_path.exists():
            # The last reference to the private mount namespace: it goes, and every mount in it with it.
            run("umount", str(self.mntns_path), check=False)
        if self.run_dir.exists():
            run("umount", str(self.run_dir), check=False)
            run("rm", "-rf", "--one-file-system", str(self.run_dir), check=False)
        for d in self.all_cgroup_dirs():
            for sub in sorted((p for p in d.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                with contextlib.suppress(OSError):
                    sub.rmdir()
            with contextlib.suppress(OSError):
                d.rmdir()
        if self.netns_path.exists():
            run("ip", "netns", "del", self.netns, check=False)  # the bridge, veths and node device go with it
        netns_dir = self.netns_path.parent
        if netns_dir.is_dir() and not any(netns_dir.iterdir()):
            # `ip netns add` made /run/netns a shared mount point of itself; the last namespace gone, so is it.
            run("umount", str(netns_dir), check=False)
            with contextlib.suppress(OSError):
                netns_dir.rmdir()
        if not any(Path("/run").glob("bk8s-*")):  # no other cluster still binds them in its own namespace
            for point in HOST_MOUNT_POINTS:
                with contextlib.suppress(OSError):
                    point.rmdir()  # only ever empty here: the bind mounts lived in the private namespace

    def _kill_cgroup_tree(self, deadline: float) -> None:
        freezer = CGROUP_FS / "freezer" / self.cgroup_name / "freezer.state"
        while True:
            pids = self.pids()
            if not pids:
                return
            # Frozen first, so nothing forks while we kill; SIGKILL reaches frozen tasks once thawed.
            with contextlib.suppress(OSError):
                freezer.write_text("FROZEN")
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                freezer.write_text("THAWED")
            for pid in pids:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
            if time.monotonic() > deadline:
                raise RuntimeError(f"processes of {self.cgroup_name} survived SIGKILL: {sorted(self.pids())}")
            time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


_CLONE_NEWNET = 0x40000000


def _setns(fd: int) -> None:
    # os.setns arrived in Python 3.12; libc's is the same call.
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextlib.contextmanager
def inside_netns(netns_path: Path) -> Iterator[None]:
    """The calling *thread* in the cluster's network namespace for the block (setns is per thread):
    sockets opened here belong to that namespace and keep it after the block."""
    with open("/proc/thread-self/ns/net") as home, open(netns_path) as target:
        _setns(target.fileno())
        try:
            yield
        finally:
            _setns(home.fileno())
