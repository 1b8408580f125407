"""What a test cluster leaves on this machine, listed so that a test can compare before and after.

Seen from this machine's own namespaces: network interfaces, routes, firewall rules, mounts, network
namespaces, the top level of every cgroup hierarchy, /run entries, the kubelet's hard-coded folders,
and the processes that belong to a cluster (in its cgroup tree, in its network namespace, or with its
state folder on their command line).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

from tests.cluster.sandbox import CGROUP_FS, HOST_MOUNT_POINTS


def _out(*argv: str) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    return result.stdout if result.returncode == 0 else f"<{' '.join(argv)} failed: {result.stderr.strip()}>"


def host_state() -> dict[str, tuple[str, ...]]:
    """Everything a cluster could leave in this machine's own namespaces, as sorted lines."""
    cgroups = sorted(f"{h.name}/{d.name}" for h in CGROUP_FS.iterdir() if h.is_dir()
                     for d in h.iterdir() if d.is_dir())
    return {
        "interfaces": tuple(sorted(line.split(":")[1].strip() for line in _out("ip", "-o", "link").splitlines())),
        "routes": tuple(sorted(_out("ip", "route").splitlines() + _out("ip", "-6", "route").splitlines())),
        "firewall": tuple(_out("nft", "list", "ruleset").splitlines()),
        "mounts": tuple(sorted(Path("/proc/mounts").read_text().splitlines())),
        "network namespaces": tuple(sorted(os.listdir("/run/netns"))) if Path("/run/netns").is_dir() else (),
        "cgroups": tuple(cgroups),
        "run": tuple(sorted(p.name for p in Path("/run").iterdir())),
        "kubelet folders": tuple(str(p) for p in HOST_MOUNT_POINTS if p.exists()),
    }


def cluster_processes(state_dir: Path, cgroup_name: str, netns_inode: int | None) -> list[str]:
    """Processes of one cluster: in its cgroup tree, in its network namespace, or naming its state folder."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            cgroups = (entry / "cgroup").read_text()
            net = os.stat(entry / "ns" / "net").st_ino
            if f"/{cgroup_name}" in cgroups or net == netns_inode or str(state_dir) in cmdline:
                found.append(f"{entry.name} {cmdline[:120]}")
    return found
