#!/usr/bin/env bash
# Builds versitygw, a real S3-compatible server (Apache-2.0; POSIX backend: a folder holds the buckets),
# from the Go module pinned in tests/cluster/node-bin/versitygw, into the cache outside the repo, and
# prints its folder on the last line. The tests run it on loopback (tests/integration) and, as an image
# made by scripts/build-images.sh, as a pod of the test cluster (tests/cluster/test_real_node_exports.py).
# A warm run checks the version and returns at once.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MOD="$ROOT/tests/cluster/node-bin/versitygw"
log() { echo "build-versitygw: $*" >&2; }
command -v go >/dev/null 2>&1 || { log "no Go toolchain on PATH (need Go >= 1.25)"; exit 3; }
VGW_V=$(sed -n 's|^[[:space:]]*\(require \)\{0,1\}github.com/versity/versitygw \(v[0-9.]*\).*|\2|p' "$MOD/go.mod" | head -1)
[ -n "$VGW_V" ] || { log "cannot read the versitygw version from $MOD/go.mod"; exit 2; }
BIN="${BOOKGEN_K8S_CACHE:-$HOME/.cache/bookgen-k8s}/versitygw-$VGW_V-$(go env GOVERSION)/bin"
is_built() { [ -x "$BIN/versitygw" ] && "$BIN/versitygw" --version 2>/dev/null | grep -q "Version  : $VGW_V\$"; }
if is_built; then echo "$BIN"; exit 0; fi
mkdir -p "$BIN"
start=$(date +%s)
log "cold build of versitygw $VGW_V"
(cd "$MOD" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath \
  -ldflags "-s -w -X main.Version=$VGW_V -X main.Build=module-proxy" -o "$BIN/.versitygw.tmp" \
  github.com/versity/versitygw/cmd/versitygw)
mv "$BIN/.versitygw.tmp" "$BIN/versitygw"
is_built || { log "the built binary does not report $VGW_V"; exit 5; }
log "built in $(( $(date +%s) - start )) s"
echo "$BIN"
