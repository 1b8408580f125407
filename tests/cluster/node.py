"""The real node of the test cluster: containerd (Debian's runc), the kubelet and kube-proxy, all in
the cluster's network namespace and private mount namespace (sandbox.py), with the CNI bridge for
pods. Configuration only here; controlplane.py starts them in order.

Settings that differ from a stock node, and why:
- containerd `restrict_oom_score_adj`: root on these machines lacks CAP_SYS_RESOURCE; without it
  every sandbox fails in runc ("can't get final child's PID from pipe: EOF").
- containerd `netns_mounts_under_state_dir` and every socket, state and runc root under the run
  folder: nothing of the cluster lands in /run/containerd or /var/run/netns.
- kubelet `protectKernelDefaults: true`: it only checks the six tunables, which the private mount
  namespace shows as set; `failCgroupV1: false` (these machines mount v1 hierarchies);
  `cgroupRoot` the sandbox's cgroup; eviction thresholds at 0 (a test node, not a capacity guard).
- kube-proxy in nftables mode with `conntrack.maxPerCore: 0` and the conntrack timeouts at 0: it
  writes no machine-wide conntrack sysctl; its rules live in the namespace.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.cluster.sandbox import NODE_IP, POD_CIDR, Sandbox

NODE_NAME = "bk8s-node"
CLUSTER_DNS = "10.0.0.10"
SANDBOX_IMAGE = "registry.k8s.io/pause:3.10.2"
RUNC = "/usr/sbin/runc"
CNI_BIN = "/usr/lib/cni"


def containerd_socket(sb: Sandbox) -> Path:
    return sb.run_dir / "containerd.sock"


def containerd_config(sb: Sandbox) -> str:
    run, state = sb.run_dir, sb.state
    return f"""version = 3
root = "{state / 'containerd'}"
state = "{run / 'containerd'}"

[grpc]
  address = "{containerd_socket(sb)}"

[ttrpc]
  address = "{run / 'containerd.ttrpc'}"

[plugins]
  [plugins.'io.containerd.shim.v1.manager']
    socket_dir = "{run / 's'}"
  [plugins.'io.containerd.nri.v1.nri']
    disable = true
  [plugins.'io.containerd.grpc.v1.cri']
    disable_tcp_service = true
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = "overlayfs"
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = "{SANDBOX_IMAGE}"
  [plugins.'io.containerd.cri.v1.runtime']
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    cdi_spec_dirs = []
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = "runc"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = "{RUNC}"
          Root = "{run / 'runc'}"
          SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ["{CNI_BIN}"]
      conf_dir = "{state / 'cni'}"
"""


def cni_conflist() -> dict[str, object]:
    return {
        "cniVersion": "1.0.0",
        "name": "bk8s",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": True,
                "ipMasq": False,  # nothing is ever routed out of the namespace: there is no way out
                "hairpinMode": True,  # a pod reaching itself through its own Service
                "ipam": {"type": "host-local", "ranges": [[{"subnet": POD_CIDR}]],
                         "routes": [{"dst": "0.0.0.0/0"}]},
            },
            {"type": "loopback"},
        ],
    }


def kubelet_config(sb: Sandbox) -> dict[str, object]:
    pki = sb.state / "pki"
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": NODE_IP,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(pki / "ca.crt")}},
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": str(pki / "kubelet-serving.crt"),
        "tlsPrivateKeyFile": str(pki / "kubelet-serving.key"),
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "containerRuntimeEndpoint": f"unix://{containerd_socket(sb)}",
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{sb.cgroup_name}",
        "failCgroupV1": False,
        "clusterDNS": [CLUSTER_DNS],
        "clusterDomain": "cluster.local",
        "resolvConf": "",
        "failSwapOn": False,
        "protectKernelDefaults": True,
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"nodefs.available": "0%", "imagefs.available": "0%", "nodefs.inodesFree": "0%",
                         "imagefs.inodesFree": "0%", "memory.available": "1Mi"},
        "mergeDefaultEvictionSettings": False,
        "podLogsDir": str(sb.state / "pod-logs"),
        "staticPodPath": "",
        "maxPods": 200,
        "serializeImagePulls": False,
        "registerNode": True,
        "nodeStatusUpdateFrequency": "5s",
        "syncFrequency": "10s",
        # Secrets and ConfigMaps mounted in pods follow the API within seconds (a test rotates one).
        "configMapAndSecretChangeDetectionStrategy": "Watch",
    }


def kube_proxy_config(sb: Sandbox, kubeconfig: Path) -> dict[str, object]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "nftables",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": NODE_NAME,
        "bindAddress": NODE_IP,
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        "clusterCIDR": POD_CIDR,
        "nodePortAddresses": [f"{NODE_IP}/32"],
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
    }


def write_configs(sb: Sandbox, kubeconfigs: dict[str, Path]) -> dict[str, Path]:
    """Every node component's configuration under the state folder; returns their paths."""
    node = sb.state / "node"
    node.mkdir(parents=True, exist_ok=True)
    (sb.state / "cni").mkdir(exist_ok=True)
    (sb.state / "cni" / "10-bk8s.conflist").write_text(json.dumps(cni_conflist(), indent=2))
    paths = {"containerd": node / "containerd.toml", "kubelet": node / "kubelet.json",
             "kube-proxy": node / "kube-proxy.json"}
    paths["containerd"].write_text(containerd_config(sb))
    paths["kubelet"].write_text(json.dumps(kubelet_config(sb), indent=2))
    paths["kube-proxy"].write_text(json.dumps(kube_proxy_config(sb, kubeconfigs["kube-proxy"]), indent=2))
    return paths


def containerd_argv(bin_dir: Path, config: Path) -> list[str]:
    return [str(bin_dir / "containerd"), "--config", str(config), "--log-level", "warn"]


def kubelet_argv(sb: Sandbox, bin_dir: Path, config: Path, kubeconfig: Path) -> list[str]:
    return [
        str(bin_dir / "kubelet"), f"--config={config}", f"--kubeconfig={kubeconfig}",
        f"--hostname-override={NODE_NAME}", f"--node-ip={NODE_IP}",
        f"--root-dir={sb.state / 'kubelet'}", f"--cert-dir={sb.state / 'kubelet-pki'}", "--v=1",
    ]  # fmt: skip


def kube_proxy_argv(bin_dir: Path, config: Path) -> list[str]:
    return [str(bin_dir / "kube-proxy"), f"--config={config}", "--v=1"]


def node_environment(bin_dir: Path, base: dict[str, str]) -> dict[str, str]:
    """containerd finds its shim on PATH; runc and the CNI plugins are Debian's."""
    return {**base, "PATH": f"{bin_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}


def import_images(sb: Sandbox, bin_dir: Path, images_dir: Path) -> list[str]:
    """Import the images of scripts/build-images.sh that containerd's `k8s.io` namespace (the one the
    kubelet uses) lacks, with their aliases; pods then need no pull. A rebuilt image has a new
    reference, so a running cluster picks it up. Returns the references imported."""
    ctr = [str(bin_dir / "ctr"), "--address", str(containerd_socket(sb)), "-n", "k8s.io"]
    present = set(subprocess.run([*ctr, "images", "ls", "-q"], check=True, capture_output=True, text=True,
                                 timeout=60).stdout.split())
    refs: list[str] = []
    for line in (images_dir / "images.txt").read_text().splitlines():
        ref, archive, *aliases = line.split()
        if not (ref in present and all(a in present for a in aliases)):
            subprocess.run([*ctr, "images", "import", "--local", str(images_dir / archive)],
                           check=True, capture_output=True, timeout=300)
            refs.append(ref)
            for alias in aliases:
                subprocess.run([*ctr, "images", "tag", "--force", ref, alias], check=True, capture_output=True,
                               timeout=60)
                refs.append(alias)
        # As if pulled by digest: the manifest digest becomes a name too (`repo@sha256:...`), so a
        # BookGenQueue that pins `image.digest` runs from the same store.
        digest = _manifest_digest(ctr, ref)
        for name in (ref, *aliases):
            pinned = f"{name.rsplit(':', 1)[0]}@{digest}"
            if pinned not in present:
                subprocess.run([*ctr, "images", "tag", "--force", ref, pinned], check=True, capture_output=True,
                               timeout=60)
    return refs


def _manifest_digest(ctr: list[str], ref: str) -> str:
    out = subprocess.run([*ctr, "images", "ls", f"name=={ref}"], check=True, capture_output=True, text=True,
                         timeout=60).stdout.splitlines()
    return next(line.split()[2] for line in out[1:] if line.split()[0] == ref)


def manifest_digest(sb: Sandbox, bin_dir: Path, ref: str) -> str:
    """The manifest digest containerd holds for `ref` (what a registry would serve it under)."""
    return _manifest_digest([str(bin_dir / "ctr"), "--address", str(containerd_socket(sb)), "-n", "k8s.io"], ref)
