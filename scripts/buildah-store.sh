# Sourced by scripts/build-images.sh and scripts/release: the project's buildah, with its layer store
# in the cache outside the repo (so a release after a test run rebuilds nothing) and a runroot of its
# own, never /var/lib/containers. Defines CACHE, STORE, RUNROOT, `bh` (buildah on that store),
# `buildah_cleanup` (for the caller's EXIT trap) and BUILD_MOUNTS (for `bh bud`).
# buildah always runs with `--isolation chroot` or the host network: its default network would add a
# bridge and firewall rules to this machine's namespace.
CACHE="${BOOKGEN_K8S_CACHE:-$HOME/.cache/bookgen-k8s}"
STORE="$CACHE/buildah"
RUNROOT="/run/bk8s-buildah-$$"
mkdir -p "$STORE"
# One build at a time on this store: `buildah_cleanup` removes every working container, so a second
# build (another checkout, a release during a test run) would pull the floor from under the first.
exec {BUILDAH_STORE_LOCK}>"$CACHE/buildah.lock"
if ! flock -n "$BUILDAH_STORE_LOCK"; then
  echo "buildah-store: another build holds $CACHE/buildah.lock; waiting for it" >&2
  flock "$BUILDAH_STORE_LOCK"
fi
bh() { buildah --root "$STORE" --runroot "$RUNROOT" --storage-driver overlay "$@"; }
# containers/image keeps a blob-info cache in /var/lib/containers/cache whatever --root says: if this
# run makes that folder, it removes it again.
[ -e /var/lib/containers ] && MADE_VAR_LIB_CONTAINERS=0 || MADE_VAR_LIB_CONTAINERS=1
buildah_cleanup() {
  # Containers (working copies) are never kept; their mounts go with them. Then the runroot.
  bh rm --all >/dev/null 2>&1 || true
  if ! grep -q " $RUNROOT" /proc/mounts; then rm -rf "$RUNROOT"; fi
  if [ "$MADE_VAR_LIB_CONTAINERS" = 1 ]; then rm -rf /var/lib/containers; fi
}
# The build's RUN steps see this machine's pip configuration and CA bundle (a proxy's CA, where one is
# in use) as read-only mounts: nothing of them lands in a layer, and the Dockerfile stays unchanged.
BUILD_MOUNTS=()
[ -f /etc/pip.conf ] && BUILD_MOUNTS+=(-v /etc/pip.conf:/etc/pip.conf:ro)
[ -f /etc/ssl/certs/ca-certificates.crt ] &&
  BUILD_MOUNTS+=(-v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
true
