"""The Pod Security Standards "restricted" profile (which includes "baseline"), as a pure check.

`restricted_violations(pod_spec)` returns one message per violation, [] when the pod would be admitted
by a namespace labelled `pod-security.kubernetes.io/enforce: restricted` (policy version 1.31).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ALLOWED_VOLUME_TYPES = frozenset(
    {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}
)
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
ALLOWED_SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})
ALLOWED_SECCOMP = frozenset({"RuntimeDefault", "Localhost"})
ALLOWED_APPARMOR = frozenset({"RuntimeDefault", "Localhost"})


def _containers(pod: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    out = []
    for kind in ("initContainers", "containers", "ephemeralContainers"):
        for c in pod.get(kind) or []:
            out.append((f"{kind}[{c.get('name', '?')}]", c))
    return out


def restricted_violations(pod_spec: Mapping[str, Any]) -> list[str]:
    v: list[str] = []
    psc: Mapping[str, Any] = pod_spec.get("securityContext") or {}
    containers = _containers(pod_spec)

    # -- baseline
    for host in ("hostNetwork", "hostPID", "hostIPC"):
        if pod_spec.get(host):
            v.append(f"{host} must not be true")
    if (psc.get("windowsOptions") or {}).get("hostProcess"):
        v.append("pod: windowsOptions.hostProcess must not be true")
    for sysctl in psc.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            v.append(f"sysctl {sysctl.get('name')} is not in the safe set")
    for vol in pod_spec.get("volumes") or []:
        kinds = [k for k in vol if k != "name"]
        if "hostPath" in kinds:
            v.append(f"volume {vol.get('name')} uses hostPath")
        # restricted: only these volume types
        for k in kinds:
            if k not in ALLOWED_VOLUME_TYPES and k != "hostPath":
                v.append(
                    f"volume {vol.get('name')} has type {k}, not allowed (allowed: {sorted(ALLOWED_VOLUME_TYPES)})"
                )

    def selinux_check(where: str, sc: Mapping[str, Any]) -> None:
        opts = sc.get("seLinuxOptions") or {}
        if opts.get("type", "") not in ALLOWED_SELINUX_TYPES:
            v.append(f"{where}: seLinuxOptions.type {opts.get('type')} is not allowed")
        if opts.get("user") or opts.get("role"):
            v.append(f"{where}: seLinuxOptions.user/role must not be set")

    selinux_check("pod", psc)
    pod_seccomp = (psc.get("seccompProfile") or {}).get("type")
    pod_apparmor = (psc.get("appArmorProfile") or {}).get("type")
    if pod_apparmor is not None and pod_apparmor not in ALLOWED_APPARMOR:
        v.append(f"pod: appArmorProfile {pod_apparmor} is not allowed")
    if pod_seccomp is not None and pod_seccomp not in ALLOWED_SECCOMP:
        v.append(f"pod: seccompProfile {pod_seccomp} is not allowed (RuntimeDefault or Localhost)")
    pod_non_root = psc.get("runAsNonRoot")
    if psc.get("runAsUser") == 0:
        v.append("pod: runAsUser must not be 0")

    for where, c in containers:
        sc: Mapping[str, Any] = c.get("securityContext") or {}
        if sc.get("privileged"):
            v.append(f"{where}: privileged must not be true")
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            v.append(f"{where}: windowsOptions.hostProcess must not be true")
        for port in c.get("ports") or []:
            if port.get("hostPort"):
                v.append(f"{where}: hostPort {port['hostPort']} is not allowed")
        if sc.get("procMount", "Default") != "Default":
            v.append(f"{where}: procMount must be Default")
        selinux_check(where, sc)
        apparmor = (sc.get("appArmorProfile") or {}).get("type")
        if apparmor is not None and apparmor not in ALLOWED_APPARMOR:
            v.append(f"{where}: appArmorProfile {apparmor} is not allowed")
        # -- restricted
        if sc.get("allowPrivilegeEscalation") is not False:
            v.append(f"{where}: allowPrivilegeEscalation must be false")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            v.append(f"{where}: capabilities must drop ALL")
        extra = [cap for cap in caps.get("add") or [] if cap != "NET_BIND_SERVICE"]
        if extra:
            v.append(f"{where}: capabilities may add only NET_BIND_SERVICE (adds {', '.join(extra)})")
        non_root = sc.get("runAsNonRoot", pod_non_root)
        if non_root is not True:
            v.append(f"{where}: runAsNonRoot must be true (on the pod or the container)")
        if sc.get("runAsUser") == 0:
            v.append(f"{where}: runAsUser must not be 0")
        seccomp = (sc.get("seccompProfile") or {}).get("type", pod_seccomp)
        if seccomp not in ALLOWED_SECCOMP:
            v.append(f"{where}: seccompProfile must be RuntimeDefault or Localhost (on the pod or the container)")
    return v
