#!/usr/bin/env bash
# Builds kube-router from the Go module pinned in tests/cluster/node-bin/kube-router into the cache
# outside the repo and prints the folder on its last line. The test cluster runs it firewall-only
# (its NetworkPolicy controller, iptables + ipset) so that our NetworkPolicies are enforced there
# (tests/cluster/netpol_engine.py; docs/testing.md says why kube-router and not
# kube-network-policies). It execs `ipset` and `iptables-save/-restore`: Debian's are installed here
# when missing. A warm run checks the version and returns at once. Exit 3: no Go toolchain.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MOD="$ROOT/tests/cluster/node-bin/kube-router"
PKG=github.com/cloudnativelabs/kube-router/v2
log() { echo "build-kube-router: $*" >&2; }

need_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
missing=()
command -v ipset >/dev/null 2>&1 || missing+=(ipset)
command -v iptables-restore >/dev/null 2>&1 || missing+=(iptables)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing from Debian: ${missing[*]}"
  need_root apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive need_root apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
    --no-install-recommends "${missing[@]}" >/dev/null
fi

command -v go >/dev/null 2>&1 || { log "no Go toolchain on PATH (need Go >= 1.26)"; exit 3; }
KR_V=$(sed -n "s|^[[:space:]]*\(require \)\{0,1\}$PKG \(v[0-9.]*\).*|\2|p" "$MOD/go.mod" | head -1)
[ -n "$KR_V" ] || { log "cannot read kube-router's version from $MOD/go.mod"; exit 2; }
BIN="${BOOKGEN_K8S_CACHE:-$HOME/.cache/bookgen-k8s}/kube-router-$KR_V-$(go env GOVERSION)/bin"

# `kube-router --version` prints the version set by -X below and needs no cluster.
is_built() { local out; out=$("$BIN/kube-router" --version 2>&1) && [[ "$out" == *"$KR_V"* ]]; }
if is_built; then echo "$BIN"; exit 0; fi

mkdir -p "$BIN"
TMP="$BIN/.tmp"; rm -rf "$TMP"; mkdir -p "$TMP"  # a killed build leaves nothing half-made in $BIN
start=$(date +%s)
# -mod=mod: the wrapper's go.sum is complete, but a newer toolchain may want one more line.
export CGO_ENABLED=0 GOFLAGS=-mod=mod
log "cold build of kube-router $KR_V with $(go env GOVERSION) (a few minutes on two cores)"
(cd "$MOD" && go build -trimpath \
  -ldflags "-s -w -X $PKG/pkg/version.Version=$KR_V -X $PKG/pkg/version.BuildDate=module-proxy" \
  -o "$TMP/kube-router" "$PKG/cmd/kube-router")
mv "$TMP/kube-router" "$BIN/" && rmdir "$TMP"
is_built || { log "the built binary does not report $KR_V"; exit 5; }
log "built in $(( $(date +%s) - start )) s"
echo "$BIN"
