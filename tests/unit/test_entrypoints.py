"""Acceptance 4: every entrypoint of the container image runs from the *installed* package.

The image installs the project non-editable into a venv (`pip install --no-deps .` from the Docker
build context) and starts each role by an exec-form command. This test does the same without
Docker: it copies the build context (what .dockerignore admits), installs it into a fresh venv
(`--no-deps`; the dependencies are made visible from the project venv through a .pth file, as the
lock installs them in the image), and runs every entrypoint's `--help` from a directory outside
the repository, so nothing is imported from the source tree. Then it runs every command the
operator writes into pods that use this image (worker, beat, Flower, probes) with `--help`
appended, so a renamed module or option fails here, not in a cluster.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: What .dockerignore admits into the build context (tests/unit/test_dockerfile.py checks the list).
CONTEXT = ("pyproject.toml", "requirements.lock", "worker", "operator")
CONTEXT_EXCLUDES = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "api-calls.json")


class ImageVenv:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.python = str(root / "venv" / "bin" / "python")
        self.bin = root / "venv" / "bin"
        self.cwd = root / "run"

    def argv(self, command: list[str]) -> list[str]:
        """The image's PATH has /opt/venv/bin first: `python`, `celery`, `bookgen` are its scripts.
        Here `celery` (a dependency's script, not installed in this venv) runs as `python -m celery`."""
        head, *rest = command
        if head == "python":
            return [self.python, *rest]
        if head == "celery":
            return [self.python, "-m", "celery", *rest]
        return [str(self.bin / head), *rest]

    def run(self, command: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith(("FLOWER_", "REDIS_", "BOOKGEN_"))}
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        return subprocess.run(self.argv(command), cwd=self.cwd, env=env, capture_output=True, text=True,
                              timeout=timeout)


@pytest.fixture(scope="module")
def image_venv(tmp_path_factory: pytest.TempPathFactory) -> ImageVenv:
    root = tmp_path_factory.mktemp("image")
    context = root / "context"
    context.mkdir()
    for name in CONTEXT:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, context / name, ignore=CONTEXT_EXCLUDES)
        else:
            shutil.copy2(source, context / name)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], check=True)
    site = Path(subprocess.run([str(root / "venv" / "bin" / "python"), "-c",
                                "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # the dependencies (the lock's closure) from the project venv; the project itself is NOT there:
    # a plain path entry does not run the venv's editable-install hook.
    (site / "image-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(root / "venv" / "bin" / "python"), "install",
         "--quiet", "--no-deps", "--disable-pip-version-check", str(context)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, f"installing the build context failed:\n{result.stdout}\n{result.stderr}"
    venv = ImageVenv(root)
    venv.cwd.mkdir()
    return venv


def test_the_package_is_imported_from_the_install_not_the_source_tree(image_venv: ImageVenv) -> None:
    result = image_venv.run(["python", "-c", "import bookgen_worker, bookgen_operator, celery; "
                             "print(bookgen_worker.__file__); print(bookgen_operator.__file__)"])
    assert result.returncode == 0, result.stderr
    for path in result.stdout.split():
        assert path.startswith(str(image_venv.root / "venv")), path
    # package data ships too: the operator builds PrometheusRules from the alerts file
    listing = "print(sorted(p.name for p in resources.files('bookgen_worker.metrics.assets').iterdir()))"
    assets = image_venv.run(["python", "-c", f"from importlib import resources; {listing}"])
    assert "alerts.yaml" in assets.stdout and "dashboard.json" in assets.stdout, assets.stderr


ENTRYPOINTS = {
    "operator": (["python", "-m", "bookgen_operator", "--help"], "--namespace"),
    "worker": (["celery", "-A", "bookgen_worker.app", "worker", "--help"], "--queues"),
    "beat": (["celery", "-A", "bookgen_worker.app", "beat", "--help"], "--schedule"),
    "flower": (["python", "-m", "bookgen_worker.flower", "--help"], "--no-auth"),
    "cli": (["bookgen", "--help"], "usage: bookgen"),
}


@pytest.mark.parametrize("role", ENTRYPOINTS)
def test_entrypoint_help_runs_from_the_installed_package(image_venv: ImageVenv, role: str) -> None:
    command, expected = ENTRYPOINTS[role]
    result = image_venv.run(command)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stderr[-2000:]}"
    assert expected in result.stdout, result.stdout[-2000:]
    assert "Traceback" not in result.stderr


def test_the_image_default_command_is_the_operator() -> None:
    from tests.unit.test_dockerfile import instructions

    (cmd,) = [json.loads(args) for word, args in instructions() if word == "CMD"]
    assert cmd[:3] == ENTRYPOINTS["operator"][0][:3]


def pod_commands() -> list[tuple[str, list[str]]]:
    """Every command (container and exec probe) the operator puts into pods that run our image."""
    from bookgen_operator.cli.spec_file import load_queue_file
    from bookgen_operator.core.resources import desired_objects

    spec = load_queue_file(ROOT / "examples" / "bookgenqueue-full.yaml")
    commands: list[tuple[str, list[str]]] = []
    for obj in desired_objects(spec):
        template: dict[str, Any] = obj.get("spec", {}).get("template", {})
        for container in template.get("spec", {}).get("containers", []):
            if container["image"] != spec.image.ref:
                continue  # Redis runs its own image
            where = f"{obj['kind']}/{obj['metadata']['name']}"
            commands.append((where, container["command"] + container.get("args", [])))
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                exec_ = (container.get(probe) or {}).get("exec")
                if exec_:
                    commands.append((f"{where} {probe}", exec_["command"]))
    return commands


def test_every_command_the_operator_runs_in_the_image_parses(image_venv: ImageVenv) -> None:
    commands = pod_commands()
    kinds = {command[0] for _, command in commands}
    assert kinds <= {"python", "celery"}, kinds  # on the image's PATH: /opt/venv/bin
    roles = {" ".join(command[:4]) for _, command in commands}
    assert any("worker" in r for r in roles) and any("beat" in r for r in roles)
    assert any("bookgen_worker.flower" in r for r in roles)
    for where, command in commands:
        result = image_venv.run([*command, "--help"])
        assert result.returncode == 0, f"{where}: {' '.join(command)} --help failed:\n{result.stderr[-2000:]}"
        if command[0] == "python":
            # argparse honours --help even after unknown options, so also run it for real (no Redis,
            # no credentials: it stops at once) and check it got past the argument parsing.
            try:
                real = image_venv.run(command, timeout=20)
            except subprocess.TimeoutExpired:
                continue  # it was running: the arguments parsed
            assert "usage:" not in real.stderr and "Traceback" not in real.stderr, f"{where}:\n{real.stderr[-2000:]}"


def test_the_argparse_check_catches_an_unknown_option(image_venv: ImageVenv) -> None:
    result = image_venv.run(["python", "-m", "bookgen_worker.flower", "--no-such-option"], timeout=20)
    assert "usage:" in result.stderr

