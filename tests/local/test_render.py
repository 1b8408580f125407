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


def _render(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "queue.yaml"
    path.write_text(text)
    return subprocess.run([BOOKGEN, "render", "-f", str(path)], capture_output=True, text=True, timeout=60)


def _secret_refs(value: Any) -> set[str]:
    if isinstance(value, dict):
        found = {value["secretKeyRef"]["name"]} if "secretKeyRef" in value else set()
        return found.union(*(_secret_refs(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_secret_refs(v) for v in value))
    return set()


def test_render_prints_valid_manifests_with_the_secrets_they_reference(tmp_path: Path) -> None:
    result = _render(tmp_path, SPEC)
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
    again = [d for d in yaml.safe_load_all(_render(tmp_path, SPEC).stdout) if d is not None and d["kind"] == "Secret"]
    assert again[0]["stringData"] != secrets["books-redis"]["stringData"]


def test_render_of_an_invalid_spec_is_one_line(tmp_path: Path) -> None:
    result = _render(tmp_path, SPEC.replace("spec:\n", "spec:\n  pools: [{name: Bad_Name, queues: [export]}]\n"))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("bookgen: error: spec.pools")
    assert result.stdout == ""
