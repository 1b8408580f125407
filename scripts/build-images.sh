#!/usr/bin/env bash
# Builds every container image the test cluster runs, with nothing pulled from a container registry,
# into a cache outside the repo, and prints that folder on its last line. Each image is saved as a
# docker-archive `<name>.tar` with a `<name>.key` beside it; `images.txt` lists "reference archive
# [alias...]" for the cluster to import into containerd. An image is rebuilt only when its key
# (what it is made of) changes:
#   pause         Kubernetes' own pause.c (scripts/build-node.sh), from scratch
#   python base   Debian bookworm's python3 by mmdebstrap, under the exact name our Dockerfile's FROM uses
#   bookgen-queue the product, built by buildah from the project's own unchanged Dockerfile
#   redis         Debian's redis-server by mmdebstrap, under the name a BookGenQueue's default expects
#   coredns, local-path-provisioner, busybox   the node's add-ons, from the binaries of build-node.sh
#   versitygw     a real S3-compatible server for the export tests (scripts/build-versitygw.sh), from scratch
#   prometheus-operator, prometheus-config-reloader, prometheus   scripts/build-prometheus.sh, from scratch
# Usage: scripts/build-images.sh NODE_BIN_DIR
# buildah runs only with `--isolation chroot` (its default network would add a bridge and firewall
# rules to this machine's namespace) and with its storage under the cache, not in /var/lib/containers.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NODE_BIN=${1:?usage: build-images.sh NODE_BIN_DIR (the last line of scripts/build-node.sh)}
source "$ROOT/scripts/buildah-store.sh"
OUT="$CACHE/images"
mkdir -p "$OUT"
log() { echo "build-images: $*" >&2; }
cleanup() { buildah_cleanup; }
trap cleanup EXIT

DEBIAN_SOURCES="deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main"
PY_BASE_REF="docker.io/library/python:3.11.14-slim-bookworm"
PY_BASE_PKGS="python3,python3-venv,python-is-python3,passwd,ca-certificates"
REDIS_REF="docker.io/library/redis:7.2.5-alpine"
REDIS_PKGS="redis-server"

sha() { sha256sum | cut -c1-16; }
fresh() { [ -f "$OUT/$1.tar" ] && [ "$(cat "$OUT/$1.key" 2>/dev/null)" = "$2" ]; }
save() {  # save NAME REF KEY: the committed image REF as OUT/NAME.tar, then its key
  rm -f "$OUT/$1.tar.tmp"
  bh push --quiet "$2" "docker-archive:$OUT/$1.tar.tmp:$2" >/dev/null
  mv "$OUT/$1.tar.tmp" "$OUT/$1.tar"
  echo "$3" >"$OUT/$1.key"
  log "$1 ($2): $(du -m "$OUT/$1.tar" | cut -f1) MB"
}
from_scratch() {  # from_scratch NAME REF KEY DIR ENTRYPOINT-JSON [USER]: a one-layer image of DIR
  local c; c=$(bh from --quiet scratch)
  bh add --quiet "$c" "$4" / >/dev/null
  bh config --entrypoint "$5" --user "${6:-65532:65532}" "$c"
  bh commit --quiet --rm "$c" "$2" >/dev/null
  save "$1" "$2" "$3"
}
debian_rootfs() {  # debian_rootfs NAME REF KEY PACKAGES HOOK: mmdebstrap minbase + PACKAGES, committed as REF
  local tar c; tar=$(mktemp --suffix=.tar -p "$CACHE")
  mmdebstrap --quiet --variant=minbase --include="$4" --customize-hook="$5" \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' bookworm "$tar" - <<<"$DEBIAN_SOURCES" >&2
  c=$(bh from --quiet scratch)
  bh add --quiet "$c" "$tar" / >/dev/null
  rm -f "$tar"
  printf '%s\n' "$c"
}

start=$(date +%s)
KEY_BIN() { sha256sum "$NODE_BIN/$1" | cut -c1-16; }

# ---- pause, coredns, local-path-provisioner, busybox: one static binary each
stage=$(mktemp -d); trap 'rm -rf "$stage"; cleanup' EXIT
if ! fresh pause "$(KEY_BIN pause)"; then
  mkdir -p "$stage/pause" && cp "$NODE_BIN/pause" "$stage/pause/pause"
  from_scratch pause registry.k8s.io/pause:3.10.2 "$(KEY_BIN pause)" "$stage/pause" '["/pause"]' 65535:65535
fi
if ! fresh coredns "$(KEY_BIN coredns)"; then
  mkdir -p "$stage/dns" && cp "$NODE_BIN/coredns" "$stage/dns/coredns"
  from_scratch coredns bookgen.local/coredns:latest "$(KEY_BIN coredns)" "$stage/dns" '["/coredns"]'
fi
if ! fresh local-path "$(KEY_BIN local-path-provisioner)"; then
  mkdir -p "$stage/lpp/bin" && cp "$NODE_BIN/local-path-provisioner" "$stage/lpp/bin/"
  from_scratch local-path bookgen.local/local-path-provisioner:latest "$(KEY_BIN local-path-provisioner)" \
    "$stage/lpp" '["/bin/local-path-provisioner"]'
fi
BUSYBOX_KEY=$(sha256sum /bin/busybox | cut -c1-16)
if ! fresh busybox "$BUSYBOX_KEY"; then
  # The volume provisioner's helper pods run `sh -c 'mkdir -m 0777 -p DIR'` and `rm -rf DIR` as root.
  mkdir -p "$stage/bb/bin" && cp /bin/busybox "$stage/bb/bin/"
  for a in sh mkdir rm ls cat chmod; do ln -s busybox "$stage/bb/bin/$a"; done
  from_scratch busybox bookgen.local/busybox:latest "$BUSYBOX_KEY" "$stage/bb" '["/bin/sh"]' 0:0
fi

# The S3 server the export tests run in the cluster: its own small build (cached like the node's).
VGW_BIN=$(set -o pipefail; bash "$ROOT/scripts/build-versitygw.sh" | tail -1)
if ! fresh versitygw "$(sha256sum "$VGW_BIN/versitygw" | cut -c1-16)"; then
  mkdir -p "$stage/vgw" && cp "$VGW_BIN/versitygw" "$stage/vgw/versitygw"
  from_scratch versitygw bookgen.local/versitygw:latest "$(sha256sum "$VGW_BIN/versitygw" | cut -c1-16)" \
    "$stage/vgw" '["/versitygw"]'
fi

# The Prometheus Operator, its config reloader and the Prometheus it runs (scripts/build-prometheus.sh),
# each from scratch with its binary in /bin as upstream's images have it (the operator runs the
# reloader as /bin/prometheus-config-reloader). Tagged with their versions, never `latest`, which the
# kubelet would try to pull.
PROM_BIN=$(set -o pipefail; bash "$ROOT/scripts/build-prometheus.sh" | tail -1)
for c in operator prometheus-config-reloader prometheus; do
  version=$("$PROM_BIN/$c" --version 2>&1 | sed -n 's/.*version \([0-9][0-9.]*\).*/\1/p' | head -1)
  name=prometheus-${c#prometheus-}; name=${name%-prometheus}  # prometheus-operator, -config-reloader, prometheus
  key="$(sha256sum "$PROM_BIN/$c" | cut -c1-16)|v$version"
  if ! fresh "$name" "$key"; then
    mkdir -p "$stage/$name/bin" && cp "$PROM_BIN/$c" "$stage/$name/bin/$c"
    [ "$c" = prometheus ] && mkdir -p -m 0777 "$stage/$name/prometheus"
    from_scratch "$name" "bookgen.local/$name:v$version" "$key" "$stage/$name" "[\"/bin/$c\"]"
  fi
  printf -v "REF_${name//-/_}" '%s' "bookgen.local/$name:v$version"
done

# ---- the Python base our Dockerfile's FROM names, made from Debian's python3
PY_KEY=$(printf '%s|%s|%s' "$DEBIAN_SOURCES" "$PY_BASE_PKGS" 1 | sha)
if ! fresh python-base "$PY_KEY"; then
  log "python base: mmdebstrap bookworm + $PY_BASE_PKGS (about a minute)"
  c=$(debian_rootfs python-base "$PY_BASE_REF" "$PY_KEY" "$PY_BASE_PKGS" 'true')
  bh config --cmd '["python3"]' --env LANG=C.UTF-8 "$c"
  bh commit --quiet --rm "$c" "$PY_BASE_REF" >/dev/null
  save python-base "$PY_BASE_REF" "$PY_KEY"
elif ! bh inspect --type image "$PY_BASE_REF" >/dev/null 2>&1; then
  bh pull --quiet "docker-archive:$OUT/python-base.tar" >/dev/null  # the archive survived, the store did not
fi

# ---- the product, from the unchanged Dockerfile; its key is everything the build context holds
APP_KEY=$( (cd "$ROOT" && { echo "$PY_KEY"; find Dockerfile .dockerignore pyproject.toml requirements.lock worker operator \
  -type f ! -name '*.pyc' ! -path '*/__pycache__/*' ! -path '*.egg-info/*' ! -name api-calls.json -print0 |
  sort -z | xargs -0 sha256sum; }) | sha)
APP_REF="bookgen.local/bookgen-queue:$APP_KEY"
if ! fresh bookgen-queue "$APP_KEY"; then
  log "bookgen-queue: buildah bud of the Dockerfile (pip reaches PyPI through this machine's network)"
  t0=$(date +%s)
  bh bud --quiet --isolation chroot --pull-never --layers "${BUILD_MOUNTS[@]}" -f "$ROOT/Dockerfile" -t "$APP_REF" "$ROOT" >&2
  log "bookgen-queue built in $(( $(date +%s) - t0 )) s"
  save bookgen-queue "$APP_REF" "$APP_KEY"
fi

# ---- Redis from Debian, under the name a BookGenQueue's default Redis image has
REDIS_KEY=$(printf '%s|%s|%s' "$DEBIAN_SOURCES" "$REDIS_PKGS" 1 | sha)
if ! fresh redis "$REDIS_KEY"; then
  log "redis: mmdebstrap bookworm + $REDIS_PKGS"
  c=$(debian_rootfs redis "$REDIS_REF" "$REDIS_KEY" "$REDIS_PKGS" 'mkdir -p -m 0777 "$1/data"')
  bh config --cmd '["redis-server"]' --workingdir /data "$c"
  bh commit --quiet --rm "$c" "$REDIS_REF" >/dev/null
  save redis "$REDIS_REF" "$REDIS_KEY"
fi

# What the cluster imports: reference, archive, then aliases. The product also goes by the name every
# chart and BookGenQueue default names (ghcr.io/bookgen/bookgen-queue:<version>), as after a `ctr import`.
APP_VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/pyproject.toml")
cat >"$OUT/images.txt" <<EOF
registry.k8s.io/pause:3.10.2 pause.tar
bookgen.local/coredns:latest coredns.tar
bookgen.local/local-path-provisioner:latest local-path.tar
bookgen.local/busybox:latest busybox.tar
bookgen.local/versitygw:latest versitygw.tar
$REF_prometheus_operator prometheus-operator.tar
$REF_prometheus_config_reloader prometheus-config-reloader.tar
$REF_prometheus prometheus.tar
$REDIS_REF redis.tar
$APP_REF bookgen-queue.tar ghcr.io/bookgen/bookgen-queue:$APP_VERSION
EOF
log "images ready after $(( $(date +%s) - start )) s"
echo "$OUT"
