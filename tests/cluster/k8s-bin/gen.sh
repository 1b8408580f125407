#!/usr/bin/env bash
# Regenerates go.mod + go.sum of this wrapper module for one Kubernetes version:
#   tests/cluster/k8s-bin/gen.sh 1.36.3
# k8s.io/kubernetes requires its staging modules at v0.0.0 (never published) and replaces them with
# local folders; a dependency's replaces are ignored, so this module pins each staging module to the
# published v0.X.Y tag instead (kubernetes/kubernetes#79384). The list comes from the real go.mod.
set -euo pipefail
V=${1:?usage: gen.sh K8S_VERSION, e.g. 1.36.3}
MINOR_PATCH=${V#1.}
cd "$(dirname "$0")"
MODFILE=$( (cd "$(mktemp -d)" && go mod download -json "k8s.io/kubernetes@v$V") |
  sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
GODIR=$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$MODFILE")
GODEBUG_DEFAULT=$(sed -n 's/^godebug default=\(.*\)$/\1/p' "$MODFILE")
if grep -E '=> \./' "$MODFILE" | grep -vq 'staging/src/k8s.io'; then
  echo "gen.sh: k8s.io/kubernetes v$V has a local replace outside staging/; extend this script" >&2
  exit 1
fi
rm -f go.mod go.sum
go mod init bookgen.local/k8s-bin >/dev/null 2>&1
go mod edit -go="$GODIR"
[ -n "$GODEBUG_DEFAULT" ] && go mod edit -godebug "default=$GODEBUG_DEFAULT"
sed -n 's|^[[:space:]]*\(k8s\.io/[^ ]*\) => \./staging/src/k8s\.io/.*|\1|p' "$MODFILE" |
  while read -r m; do go mod edit -replace "$m=$m@v0.$MINOR_PATCH"; done
go get -tool "k8s.io/kubernetes/cmd/kube-apiserver@v$V" "k8s.io/kubernetes/cmd/kubelet@v$V" "k8s.io/kubernetes/cmd/kube-proxy@v$V" \
  "k8s.io/kubernetes/cmd/kube-controller-manager@v$V" \
  "k8s.io/kubernetes/cmd/kube-scheduler@v$V"
go mod tidy
