"""The layers of the operator package hold (import-linter's contracts in pyproject.toml), and a broken one
is reported: core imports no kopf, bookgen up (local) does not import the controller."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(python_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    if not LINT_IMPORTS.exists():
        pytest.skip("lint-imports is not installed (pip install -e '.[test]')")
    env = {**os.environ, "PYTHONPATH": str(python_path)} if python_path else None
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def test_the_contracts_are_kept() -> None:
    done = lint_imports()
    assert done.returncode == 0, done.stdout + done.stderr


def test_core_importing_kopf_and_local_importing_the_controller_break_them(tmp_path: Path) -> None:
    for package in ("operator/bookgen_operator", "worker/bookgen_worker"):
        shutil.copytree(ROOT / package, tmp_path / Path(package).name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    status = tmp_path / "bookgen_operator" / "core" / "status.py"
    status.write_text(status.read_text() + "\nimport kopf  # noqa\n")
    view = tmp_path / "bookgen_operator" / "local" / "view.py"
    view.write_text(view.read_text() + "\nfrom bookgen_operator.controller import opmetrics  # noqa\n")
    done = lint_imports(tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "bookgen_operator.core is not allowed to import kopf" in done.stdout
    assert "bookgen_operator.local is not allowed to import bookgen_operator.controller" in done.stdout
    assert "Contracts: 1 kept, 3 broken." in done.stdout
