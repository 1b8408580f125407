"""`bookgen render -n NS | kubectl apply -n NS -f -` on the real API server: accepted, and applying it a
second time changes no Secret (the render references Secrets instead of generating passwords)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.cluster.conftest import Cluster, kubectl

ROOT = Path(__file__).resolve().parents[2]
BOOKGEN = str(Path(sys.executable).parent / "bookgen")


def render(namespace: str, *extra: str) -> str:
    example = ROOT / "examples" / "bookgenqueue-minimal.yaml"
    result = subprocess.run([BOOKGEN, "render", "-n", namespace, "-f", str(example), *extra],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def secrets(cluster: Cluster, ns: str) -> dict[str, tuple[str, dict[str, str]]]:
    return {s.metadata.name: (s.metadata.resource_version, dict(s.data or {}))
            for s in cluster.core.list_namespaced_secret(ns).items}


def test_render_applies_twice_without_changing_a_secret(cluster: Cluster, namespace: str) -> None:
    # The user creates the referenced Secrets once, as the render's header says.
    wanted = {"bookgen-redis": ["password=first"], "bookgen-flower-auth": ["username=admin", "password=x"]}
    for name, pairs in wanted.items():
        kubectl(cluster, "create", "secret", "generic", name, "-n", namespace, *[f"--from-literal={p}" for p in pairs])
    before = secrets(cluster, namespace)
    first = kubectl(cluster, "apply", "-n", namespace, "-f", "-", input=render(namespace)).stdout
    assert "deployment.apps/bookgen-worker-content created" in first
    second = kubectl(cluster, "apply", "-n", namespace, "-f", "-", input=render(namespace)).stdout
    assert "created" not in second, second
    assert render(namespace) == render(namespace), "the render is the same on every run"
    assert secrets(cluster, namespace) == before
    assert cluster.apps.read_namespaced_deployment("bookgen-worker-content", namespace).metadata.namespace == namespace


def test_generated_secrets_are_only_written_when_asked(cluster: Cluster, namespace: str) -> None:
    with_secrets = render(namespace, "--generate-secrets")
    out = kubectl(cluster, "apply", "-n", namespace, "-f", "-", input=with_secrets).stdout
    assert "secret/bookgen-redis created" in out
