#!/usr/bin/env bash
# Shared set-up for scripts/demo and scripts/test: everything a fresh Debian machine lacks.
# Idempotent and quick when nothing is missing, so both commands can always call it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
TOOLS="$ROOT/.tools"

need_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

ensure_apt_package() {  # ensure_apt_package COMMAND PACKAGE [APT-GET OPTION...]
  command -v "$1" >/dev/null 2>&1 && return 0
  echo "bootstrap: installing $2 (apt)" >&2
  # Wait for another apt (a second shell, unattended upgrades) instead of failing on its lock.
  need_root apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive need_root apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${@:3}" "$2" >/dev/null
}

ensure_apt_package redis-server redis-server
# The test suite runs a real Prometheus and promtool (tests/prometheus/): Debian's prometheus package.
# Without recommends: the tests need the two binaries, not node-exporter.
case ",${BOOKGEN_EXTRAS:-}," in *,test,*) ensure_apt_package promtool prometheus --no-install-recommends ;; esac
ensure_apt_package python3 python3
python3 -c 'import venv, ensurepip' 2>/dev/null || ensure_apt_package __never__ python3-venv

digest="$(sha1sum "$ROOT/pyproject.toml" | cut -c1-12)"
stamp="$VENV/.installed-$digest-${BOOKGEN_EXTRAS:-base}"
# Any extras install the base too: after ./scripts/test, ./scripts/demo must not reinstall (and the
# reverse must only add the extras), or the two commands would keep flipping the environment.
installed() {
  [ -f "$stamp" ] && return 0
  [ -z "${BOOKGEN_EXTRAS:-}" ] && compgen -G "$VENV/.installed-$digest-*" >/dev/null
}
if ! installed; then
  echo "bootstrap: creating the Python environment in .venv" >&2
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
  if [ -n "${BOOKGEN_EXTRAS:-}" ]; then
    "$VENV/bin/python" -m pip install -q -e "$ROOT[${BOOKGEN_EXTRAS}]"
  else
    "$VENV/bin/python" -m pip install -q -e "$ROOT"
  fi
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi
export PATH="$VENV/bin:$TOOLS/bin:$PATH"
