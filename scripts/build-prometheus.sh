#!/usr/bin/env bash
# Builds the Prometheus Operator, its config reloader and Prometheus itself from the Go modules pinned
# in tests/cluster/node-bin/prometheus-operator and tests/cluster/node-bin/prometheus into the cache
# outside the repo, and prints the folder on its last line. scripts/build-images.sh makes images of
# the three, and tests/cluster/prometheus_operator.py runs them in the test cluster the way
# kube-prometheus-stack does. (Debian's `prometheus`, which the tests use for promtool, is built
# without Kubernetes service discovery, so it cannot run what the operator writes.)
# A warm run checks the versions and returns at once.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PO_MOD="$ROOT/tests/cluster/node-bin/prometheus-operator"
PROM_MOD="$ROOT/tests/cluster/node-bin/prometheus"
PO_PKG=github.com/prometheus-operator/prometheus-operator
PROM_PKG=github.com/prometheus/prometheus
log() { echo "build-prometheus: $*" >&2; }
command -v go >/dev/null 2>&1 || { log "no Go toolchain on PATH (need Go >= 1.26)"; exit 3; }
modver() { sed -n "s|^[[:space:]]*\(require \)\{0,1\}$2 \(v[0-9.]*\).*|\2|p" "$1/go.mod" | head -1; }
PO_V=$(modver "$PO_MOD" "$PO_PKG")
PROM_MODV=$(modver "$PROM_MOD" "$PROM_PKG")  # v0.305.0 is Prometheus 3.5.0: v0.3MM.P -> 3.MM.P
[ -n "$PO_V" ] && [ -n "$PROM_MODV" ] || { log "cannot read the versions from the go.mod files"; exit 2; }
PROM_V=$(echo "${PROM_MODV#v0.}" | sed -E 's/^([0-9])0*([0-9]+)\.([0-9]+)$/\1.\2.\3/')
BIN="${BOOKGEN_K8S_CACHE:-$HOME/.cache/bookgen-k8s}/prometheus-operator-$PO_V-prometheus-v$PROM_V-$(go env GOVERSION)/bin"
reports() { local out; out=$("$BIN/$1" --version 2>&1) && [[ "$out" == *"version $2"* ]]; }
is_built() {
  reports operator "${PO_V#v}" && reports prometheus-config-reloader "${PO_V#v}" && reports prometheus "$PROM_V"
}
if is_built; then echo "$BIN"; exit 0; fi
mkdir -p "$BIN"
TMP="$BIN/.tmp"; rm -rf "$TMP"; mkdir -p "$TMP"
start=$(date +%s)
V=github.com/prometheus/common/version
export CGO_ENABLED=0 GOFLAGS=-mod=mod
log "cold build of the Prometheus Operator $PO_V (a few minutes on two cores)"
(cd "$PO_MOD" && go build -trimpath \
  -ldflags "-s -w -X $V.Version=${PO_V#v} -X $V.Revision=module-proxy -X $V.Branch=module-proxy" -o "$TMP/" \
  "$PO_PKG/cmd/operator" "$PO_PKG/cmd/prometheus-config-reloader")
log "cold build of Prometheus $PROM_V (module $PROM_MODV; several minutes: every service discovery is linked in)"
(cd "$PROM_MOD" && go build -trimpath \
  -ldflags "-s -w -X $V.Version=$PROM_V -X $V.Revision=module-proxy -X $V.Branch=module-proxy" -o "$TMP/" \
  "$PROM_PKG/cmd/prometheus")
mv "$TMP"/* "$BIN/" && rmdir "$TMP"
is_built || { log "the built binaries do not report $PO_V and $PROM_V"; exit 5; }
log "built in $(( $(date +%s) - start )) s"
echo "$BIN"
