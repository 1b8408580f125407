#!/usr/bin/env bash
# Builds the real node of the test cluster from pinned Go modules into a cache outside the repo and
# prints the folder on its last line: kubelet and kube-proxy (tests/cluster/k8s-bin, the control
# plane's Kubernetes version), containerd + its runc shim + ctr, CoreDNS and the local-path volume
# provisioner (tests/cluster/node-bin/*), and the pause binary compiled from Kubernetes' own pause.c.
# runc, the CNI plugins, nftables, socat, buildah, mmdebstrap and busybox come from Debian (installed
# here when missing). A warm run checks the versions and returns at once.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
K8S_MOD="$ROOT/tests/cluster/k8s-bin"
NODE_MODS="$ROOT/tests/cluster/node-bin"
log() { echo "build-node: $*" >&2; }

need_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
# command -> Debian package. --no-install-recommends: buildah would otherwise pull in a second runtime.
declare -A DEBS=([runc]=runc [/usr/lib/cni/bridge]=containernetworking-plugins [nft]=nftables [socat]=socat
                 [buildah]=buildah [mmdebstrap]=mmdebstrap [/bin/busybox]=busybox-static [ip]=iproute2
                 [nsenter]=util-linux [gcc]=gcc [/usr/lib/x86_64-linux-gnu/libc.a]=libc6-dev)
missing=()
for cmd in "${!DEBS[@]}"; do
  if [[ "$cmd" == /* ]]; then [ -e "$cmd" ] || missing+=("${DEBS[$cmd]}")
  else command -v "$cmd" >/dev/null 2>&1 || missing+=("${DEBS[$cmd]}"); fi
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing from Debian: ${missing[*]}"
  need_root apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive need_root apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
    --no-install-recommends "${missing[@]}" >/dev/null
fi

command -v go >/dev/null 2>&1 || { log "no Go toolchain on PATH (need Go >= 1.26)"; exit 3; }
modver() { sed -n "s|^[[:space:]]*\(require \)\{0,1\}$2 \(v[0-9.]*\).*|\2|p" "$1/go.mod" | head -1; }
K8S_V=$(modver "$K8S_MOD" k8s.io/kubernetes)
CTRD_V=$(modver "$NODE_MODS/containerd" github.com/containerd/containerd/v2)
DNS_V=$(modver "$NODE_MODS/coredns" github.com/coredns/coredns)
LPP_V=$(modver "$NODE_MODS/local-path" github.com/rancher/local-path-provisioner)
for v in K8S_V CTRD_V DNS_V LPP_V; do [ -n "${!v}" ] || { log "cannot read $v from the go.mod files"; exit 2; }; done
GO_V=$(go env GOVERSION)
BIN="${BOOKGEN_K8S_CACHE:-$HOME/.cache/bookgen-k8s}/node-$K8S_V-containerd$CTRD_V-coredns$DNS_V-lpp$LPP_V-$GO_V/bin"

is_built() {
  local out f
  for f in kubelet kube-proxy containerd containerd-shim-runc-v2 ctr coredns local-path-provisioner pause; do
    [ -x "$BIN/$f" ] || return 1
  done
  out=$("$BIN/kubelet" --version 2>/dev/null) && [ "$out" = "Kubernetes $K8S_V" ] || return 1
  out=$("$BIN/kube-proxy" --version 2>/dev/null) && [ "$out" = "Kubernetes $K8S_V" ] || return 1
  out=$("$BIN/containerd" --version 2>/dev/null) && [[ "$out" == *" $CTRD_V "* ]] || return 1
  out=$("$BIN/coredns" -version 2>/dev/null) && [[ "$out" == *"CoreDNS-${DNS_V#v}"* ]] || return 1
}

# The image registry the release tests push to, run inside the cluster's namespace: Debian's
# docker-registry (the CNCF distribution registry). Only its binary, taken from the .deb: installing the
# package would start a registry service on this machine.
fetch_registry() {
  [ -x "$BIN/docker-registry" ] && return 0
  local tmp; tmp=$(mktemp -d)
  log "fetching Debian's docker-registry"
  if ! (cd "$tmp" && apt-get -o APT::Sandbox::User=root download -qq docker-registry >/dev/null 2>&1); then
    need_root apt-get -o DPkg::Lock::Timeout=600 update -qq
    (cd "$tmp" && apt-get -o APT::Sandbox::User=root download -qq docker-registry >/dev/null)
  fi
  dpkg-deb --fsys-tarfile "$tmp"/docker-registry_*.deb | tar -x -C "$tmp" ./usr/bin/docker-registry
  mkdir -p "$BIN" && mv "$tmp/usr/bin/docker-registry" "$BIN/docker-registry.tmp"
  mv "$BIN/docker-registry.tmp" "$BIN/docker-registry" && rm -rf "$tmp"
}

if is_built; then fetch_registry; echo "$BIN"; exit 0; fi

mkdir -p "$BIN"
export CGO_ENABLED=0 GOFLAGS=-mod=mod
start=$(date +%s)
TMP="$BIN/.tmp"; rm -rf "$TMP"; mkdir -p "$TMP"  # binaries land here first: a killed build leaves nothing half-made
log "cold build of the node (kubelet, kube-proxy $K8S_V, containerd $CTRD_V, CoreDNS $DNS_V, local-path $LPP_V)"

MAJ=${K8S_V#v}; MAJ=${MAJ%%.*}
MIN=${K8S_V#v$MAJ.}; MIN=${MIN%%.*}
X() { for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do printf -- "-X '%s.%s=%s' " "$p" "$1" "$2"; done; }
LDFLAGS="-s -w $(X gitVersion "$K8S_V") $(X gitMajor "$MAJ") $(X gitMinor "$MIN") $(X gitTreeState clean) $(X buildDate "$(date -u +%Y-%m-%dT%H:%M:%SZ)")"
(cd "$K8S_MOD" && go build -trimpath -tags=selinux,notest -ldflags "all=$LDFLAGS" -o "$TMP/" \
  k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy)
log "kubelet and kube-proxy done after $(( $(date +%s) - start )) s"

CTRD_PKG=github.com/containerd/containerd/v2
(cd "$NODE_MODS/containerd" && go build -trimpath -tags "no_btrfs no_devmapper no_zfs" \
  -ldflags "-s -w -X $CTRD_PKG/version.Version=$CTRD_V -X $CTRD_PKG/version.Revision=module-proxy" -o "$TMP/" \
  $CTRD_PKG/cmd/containerd $CTRD_PKG/cmd/containerd-shim-runc-v2 $CTRD_PKG/cmd/ctr)
log "containerd done after $(( $(date +%s) - start )) s"

(cd "$NODE_MODS/coredns" && go build -trimpath -ldflags "-s -w" -o "$TMP/coredns" .)
(cd "$NODE_MODS/local-path" && go build -trimpath -ldflags "-s -w -X main.VERSION=$LPP_V" \
  -o "$TMP/local-path-provisioner" github.com/rancher/local-path-provisioner)
log "CoreDNS and local-path done after $(( $(date +%s) - start )) s"

# The pod sandbox's pause process: Kubernetes' own source, as its image build compiles it.
PAUSE_C="$(cd "$K8S_MOD" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause/linux/pause.c"
gcc -Os -Wall -Werror -static -DVERSION="$K8S_V-bookgen" -o "$TMP/pause" "$PAUSE_C"
strip "$TMP/pause"

mv "$TMP"/* "$BIN/" && rmdir "$TMP"
fetch_registry
is_built || { log "the built binaries do not report the pinned versions"; exit 5; }
log "built in $(( $(date +%s) - start )) s"
echo "$BIN"
