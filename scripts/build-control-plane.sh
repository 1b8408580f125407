#!/usr/bin/env bash
# Builds etcd, kube-apiserver, kube-controller-manager and kube-scheduler from the pinned Go modules in
# tests/cluster/{k8s-bin,etcd-bin} into a cache outside the repo, keyed by the versions, and prints
# the folder on its last line. A warm run checks the four binaries' --version and returns at once.
# A cold build takes tens of minutes on two cores (the README has the measured figure).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
K8S_MOD="$ROOT/tests/cluster/k8s-bin"
ETCD_MOD="$ROOT/tests/cluster/etcd-bin"
log() { echo "build-control-plane: $*" >&2; }

command -v go >/dev/null 2>&1 || { log "no Go toolchain on PATH (need Go >= 1.26)"; exit 3; }
K8S_V=$(sed -n 's/^[[:space:]]*k8s\.io\/kubernetes \(v[0-9.]*\).*/\1/p' "$K8S_MOD/go.mod" | head -1)
ETCD_V=$(sed -n 's/^require go\.etcd\.io\/etcd\/server\/v3 \(v[0-9.]*\).*/\1/p' "$ETCD_MOD/go.mod" | head -1)
[ -n "$K8S_V" ] && [ -n "$ETCD_V" ] || { log "cannot read the pinned versions from the go.mod files"; exit 2; }
GO_V=$(go env GOVERSION)
BIN="${BOOKGEN_K8S_CACHE:-$HOME/.cache/bookgen-k8s}/$K8S_V-etcd$ETCD_V-$GO_V/bin"

is_built() {
  [ -x "$BIN/etcd" ] && [ -x "$BIN/kube-apiserver" ] && [ -x "$BIN/kube-controller-manager" ] &&
    [ -x "$BIN/kube-scheduler" ] || return 1
  # Output captured first: `cmd | grep -q` would fail under pipefail when grep exits early (SIGPIPE).
  local out
  for c in kube-apiserver kube-controller-manager kube-scheduler; do
    out=$("$BIN/$c" --version 2>/dev/null) || return 1
    [ "$out" = "Kubernetes $K8S_V" ] || return 1
  done
  out=$("$BIN/etcd" --version 2>/dev/null) || return 1
  [[ "$out" == *"etcd Version: ${ETCD_V#v}"* ]] || return 1
}

if is_built; then echo "$BIN"; exit 0; fi

mkdir -p "$BIN"
export CGO_ENABLED=0 GOFLAGS=-mod=mod
start=$(date +%s)
log "cold build of Kubernetes $K8S_V and etcd $ETCD_V with $GO_V into $BIN (tens of minutes on 2 cores)"
log "downloading modules"
(cd "$K8S_MOD" && go mod download) || { log "the Go module proxy did not serve every module (above)"; exit 4; }
(cd "$ETCD_MOD" && go mod download) || { log "the Go module proxy did not serve every etcd module"; exit 4; }

MAJ=${K8S_V#v}; MAJ=${MAJ%%.*}
MIN=${K8S_V#v$MAJ.}; MIN=${MIN%%.*}
BUILD_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
# Both version packages carry the version: the servers report component-base's, clients read client-go's.
X() { for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do printf -- "-X '%s.%s=%s' " "$p" "$1" "$2"; done; }
LDFLAGS="-s -w $(X gitVersion "$K8S_V") $(X gitMajor "$MAJ") $(X gitMinor "$MIN") $(X gitTreeState clean) $(X buildDate "$BUILD_DATE")"

log "compiling etcd $ETCD_V"
(cd "$ETCD_MOD" && go build -trimpath -ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$ETCD_V" \
  -o "$BIN/etcd.tmp" go.etcd.io/etcd/server/v3) && mv "$BIN/etcd.tmp" "$BIN/etcd"
log "etcd done after $(( $(date +%s) - start )) s; compiling kube-apiserver, kube-controller-manager, kube-scheduler"
# A build that is killed half-way leaves nothing that is_built would accept: binaries land under .tmp first.
TMP="$BIN/.tmp"; rm -rf "$TMP"; mkdir -p "$TMP"
(cd "$K8S_MOD" && go build -trimpath -tags=selinux,notest -ldflags "all=$LDFLAGS" -o "$TMP/" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler)
mv "$TMP"/kube-* "$BIN/" && rmdir "$TMP"
is_built || { log "built binaries do not report Kubernetes $K8S_V / etcd $ETCD_V"; exit 5; }
log "built in $(( $(date +%s) - start )) s"
echo "$BIN"
