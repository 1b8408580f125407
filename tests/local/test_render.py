"""`bookgen render`: the operator's manifests for review, valid for `kubectl apply`."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

from tests.local.conftest import BOOKGEN

K8S_VERSION = "1.31.0"
SPEC = """apiVersion: bookgen.io/v1alpha1
kind: BookGenQueue
metadata: {name: books, namespace: prod}
spec:
  metrics: {serviceMonitor: {enabled: never}, prometheusRule: {enabled: never}}
"""


def _render(tmp_path: Path, text: str, *args: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "queue.yaml"
    path.write_text(text)
    return subprocess.run([BOOKGEN, "render", "-f", str(path), *args], capture_output=True, text=True, timeout=60)


def _secret_refs(value: Any) -> set[str]:
    if isinstance(value, dict):
        found = {value["secretKeyRef"]["name"]} if "secretKeyRef" in value else set()
        return found.union(*(_secret_refs(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_secret_refs(v) for v in value))
    return set()


def test_render_prints_valid_manifests_with_the_secrets_they_reference(tmp_path: Path) -> None:
    result = _render(tmp_path, SPEC, "--generate-secrets")
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d is not None]
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert {("StatefulSet", "books-redis"), ("Deployment", "books-worker-content"), ("Deployment", "books-beat"),
            ("Deployment", "books-flower"), ("Secret", "books-redis"), ("Secret", "books-flower-auth")} <= kinds
    for doc in docs:
        assert doc["metadata"]["namespace"] == "prod"
        assert kubernetes_validate.validate(doc, K8S_VERSION, strict=True), doc["metadata"]["name"]
    secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
    assert _secret_refs(docs) <= set(secrets)  # every referenced Secret is in the output
    assert len(secrets["books-redis"]["stringData"]["password"]) >= 32  # a real random value, no placeholder
    again = [d for d in yaml.safe_load_all(_render(tmp_path, SPEC, "--generate-secrets").stdout)
             if d is not None and d["kind"] == "Secret"]
    assert again[0]["stringData"] != secrets["books-redis"]["stringData"]


def test_render_of_an_invalid_spec_is_one_line(tmp_path: Path) -> None:
    result = _render(tmp_path, SPEC.replace("spec:\n", "spec:\n  pools: [{name: Bad_Name, queues: [export]}]\n"))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("bookgen: error: spec.pools")
    assert result.stdout == ""


MINIMAL = Path(__file__).resolve().parents[2] / "examples" / "bookgenqueue-minimal.yaml"


def test_by_default_render_references_the_secrets_and_is_the_same_every_time(tmp_path: Path) -> None:
    first = _render(tmp_path, MINIMAL.read_text(), "-n", "books")
    assert first.returncode == 0, first.stderr
    docs = [d for d in yaml.safe_load_all(first.stdout) if d is not None]
    assert not [d for d in docs if d["kind"] == "Secret"]  # applying it again cannot rotate a password
    for name in _secret_refs(docs):  # the header says how to create each one once
        assert f"kubectl create secret generic {name} -n books" in first.stdout
    assert _render(tmp_path, MINIMAL.read_text(), "-n", "books").stdout == first.stdout


def test_render_n_puts_everything_in_that_namespace(tmp_path: Path) -> None:
    result = _render(tmp_path, MINIMAL.read_text(), "-n", "books")
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d is not None]
    assert {d["metadata"]["namespace"] for d in docs} == {"books"}
    assert "namespace: default" not in result.stdout and ".default.svc" not in result.stdout
    for doc in docs:
        assert kubernetes_validate.validate(doc, K8S_VERSION, strict=True), doc["metadata"]["name"]


def test_render_n_against_the_file_s_own_namespace_is_one_line(tmp_path: Path) -> None:
    result = _render(tmp_path, SPEC, "-n", "books")  # SPEC says namespace: prod
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "'prod', not 'books'" in result.stderr
    assert _render(tmp_path, SPEC, "-n", "prod").returncode == 0
