"""The NetworkPolicy engine of the test cluster: kube-router's network policy controller, run alone
(`--run-firewall`, no router, no service proxy) as a process of the node, in the cluster's network
namespace and cgroup like kube-proxy, so every test on the real node runs with our policies enforced.

Why kube-router and not kube-network-policies (the engine kind ships): kube-network-policies sends
the first packet of each new connection to itself with the nftables `queue` statement, and this
kernel is built without CONFIG_NFT_QUEUE: `nft add rule ... queue num 100 bypass` inside the cluster's
namespace fails with "No such file or directory", so it cannot load its rules here (v0.8.0 has no
option without it). kube-router enforces policies with iptables rules and ipsets, which this
kernel has (iptables-nft through NFT_COMPAT, xt_set, IP_SET hash:ip/hash:net, br_netfilter; the
namespace already sets `net.bridge.bridge-nf-call-iptables=1` for pods on the CNI bridge).

What it writes stays in the namespace: iptables chains (KUBE-ROUTER-*, KUBE-POD-FW-*, KUBE-NWPLCY-*)
in the namespace's `ip filter` table and ipsets, which are per network namespace too; `down` deletes
the namespace and they go with it. Firewall-only, it writes no sysctl. It admits traffic from the
node's own addresses to pods (its rule for kubelet probes), so the tests' checks made from the
namespace, and an operator run as a process on the node, are not subject to policies; pods are.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.cluster.sandbox import SERVICE_CIDR

ROOT = Path(__file__).resolve().parents[2]
NAME = "kube-router"
BUILD_SCRIPT = ROOT / "scripts" / "build-kube-router.sh"
#: kube-router's health endpoint (its default port), inside the namespace: it answers 200 once the
#: policy controller has synced its rules and keeps sending heartbeats.
HEALTH_URL = "http://127.0.0.1:20244/healthz"


def binary_dir(given: Path | None = None) -> Path:
    """The folder with kube-router: `given`, else $BOOKGEN_NETPOL_BIN (scripts/test exports it), else
    what scripts/build-kube-router.sh prints (a warm run only checks the version; a cold one builds)."""
    if given:
        return given
    env = os.environ.get("BOOKGEN_NETPOL_BIN")
    if env:
        return Path(env)
    out = subprocess.run(["bash", str(BUILD_SCRIPT)], check=True, stdout=subprocess.PIPE, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


def argv(bin_dir: Path, kubeconfig: Path, node_name: str) -> list[str]:
    return [
        str(bin_dir / NAME), f"--kubeconfig={kubeconfig}", f"--hostname-override={node_name}",
        "--run-firewall=true", "--run-router=false", "--run-service-proxy=false",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        # Policies are applied on every change it watches; the full resync is only a safety net.
        "--iptables-sync-period=1m",
        "--v=1",
    ]  # fmt: skip
