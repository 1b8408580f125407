#!/usr/bin/env bash
# Builds real KEDA (its operator and its metrics adapter) from the pinned wrapper module
# tests/cluster/peers/keda into a cache outside the repo and prints the folder on its last line.
# The benchmark that compares our autoscaler with KEDA + the HPA calls it; scripts/test does not
# (a cold build takes tens of minutes on 2 cores). A warm run checks the binaries and returns at once.
# Exit 3: no Go toolchain.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MOD="$ROOT/tests/cluster/peers/keda"
log() { echo "build-keda: $*" >&2; }

command -v go >/dev/null 2>&1 || { log "no Go toolchain on PATH (need Go >= 1.26)"; exit 3; }
KEDA_V=$(sed -n 's|^[[:space:]]*\(require \)\{0,1\}github.com/kedacore/keda/v2 \(v[0-9.]*\).*|\2|p' "$MOD/go.mod" | head -1)
[ -n "$KEDA_V" ] || { log "cannot read KEDA's version from $MOD/go.mod"; exit 2; }
GO_V=$(go env GOVERSION)
BIN="${BOOKGEN_K8S_CACHE:-$HOME/.cache/bookgen-k8s}/keda-$KEDA_V-$GO_V/bin"

# Both binaries print KEDA's version (set by -X below) in their first log line, but starting them
# needs a cluster; `go version -m` reads the embedded build info instead, which names the module
# version they were built from.
is_built() {
  local f
  for f in keda-operator keda-adapter; do
    [ -x "$BIN/$f" ] || return 1
    go version -m "$BIN/$f" 2>/dev/null | grep -q "^[[:space:]]*dep[[:space:]]*github.com/kedacore/keda/v2[[:space:]]*$KEDA_V[[:space:]]" \
      || go version -m "$BIN/$f" 2>/dev/null | grep -q "^[[:space:]]*mod[[:space:]]*github.com/kedacore/keda/v2[[:space:]]*$KEDA_V[[:space:]]" \
      || return 1
  done
}

if is_built; then echo "$BIN"; exit 0; fi

mkdir -p "$BIN"
# -mod=mod: the wrapper's go.sum is complete, but a toolchain newer than the one that tidied it may
# want one more line; the Go caches stay in their default places, outside the repo.
export CGO_ENABLED=0 GOFLAGS=-mod=mod
start=$(date +%s)
TMP="$BIN/.tmp"; rm -rf "$TMP"; mkdir -p "$TMP"  # binaries land here first: a killed build leaves nothing half-made
log "cold build of KEDA $KEDA_V (operator, metrics adapter) with $GO_V; tens of minutes on 2 cores"

# KEDA's Makefile sets these two; there is no git checkout here, so the commit names the module.
PKG=github.com/kedacore/keda/v2
LDFLAGS="-s -w -X=$PKG/version.Version=${KEDA_V#v} -X=$PKG/version.GitCommit=module-proxy-$KEDA_V"
(cd "$MOD" && go build -trimpath -ldflags "$LDFLAGS" -o "$TMP/keda-operator" "$PKG/cmd/operator")
log "operator done after $(( $(date +%s) - start )) s"
(cd "$MOD" && go build -trimpath -ldflags "$LDFLAGS" -o "$TMP/keda-adapter" "$PKG/cmd/adapter")
log "adapter done after $(( $(date +%s) - start )) s"

mv "$TMP"/* "$BIN/" && rmdir "$TMP"
is_built || { log "the built binaries do not report KEDA $KEDA_V"; exit 5; }
log "built in $(( $(date +%s) - start )) s"
echo "$BIN"
