"""Private registries, pull Secrets, digests and monitor labels reach every child (issue 13, items 6-7)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from bookgen_operator.core.resources import desired_objects, monitoring_objects, pod_specs
from bookgen_operator.core.resources.images import split_registry
from bookgen_operator.core.spec import SpecError, parse_queue
from bookgen_operator.core.spec.operator_defaults import OperatorDefaults

ROOT = Path(__file__).resolve().parents[2]
DIGEST = "sha256:" + "ab" * 32


def queue(spec: dict | None = None) -> dict:
    return {"apiVersion": "bookgen.io/v1alpha1", "kind": "BookGenQueue",
            "metadata": {"name": "bq", "namespace": "ns", "uid": "u"}, "spec": spec or {}}


def test_registry_and_pull_secrets_reach_every_pod_spec_and_digests_pin_the_image() -> None:
    spec = parse_queue(queue({"image": {"digest": DIGEST}, "imagePullSecrets": [{"name": "mine"}]}))
    spec = OperatorDefaults.from_env({"BOOKGEN_IMAGE_REGISTRY": "mirror.local:5000/",
                                      "BOOKGEN_REDIS_IMAGE_REGISTRY": "hub-mirror.local",
                                      "BOOKGEN_IMAGE_PULL_SECRETS": "corp, mine"}).apply(spec)
    pods = pod_specs(desired_objects(spec))
    assert {name.split("/")[0] for name, _ in pods} == {"Deployment", "StatefulSet"}
    for name, pod in pods:
        assert pod["imagePullSecrets"] == [{"name": "mine"}, {"name": "corp"}], name
    images = {c["image"] for _, pod in pods for c in pod["containers"]}
    assert images == {f"mirror.local:5000/bookgen/bookgen-queue:0.1.0@{DIGEST}",
                      "hub-mirror.local/library/redis:7.2.5-alpine"}


def test_our_registry_does_not_move_redis_unless_asked() -> None:
    spec = OperatorDefaults.from_env({"BOOKGEN_IMAGE_REGISTRY": "mirror.local:5000"}).apply(parse_queue(queue()))
    images = {c["image"] for _, pod in pod_specs(desired_objects(spec)) for c in pod["containers"]}
    assert images == {"mirror.local:5000/bookgen/bookgen-queue:0.1.0", "redis:7.2.5-alpine"}


def test_without_settings_images_and_pods_are_as_written() -> None:
    pods = pod_specs(desired_objects(parse_queue(queue())))
    assert all("imagePullSecrets" not in pod for _, pod in pods)
    assert {c["image"] for _, pod in pods for c in pod["containers"]} == {
        "ghcr.io/bookgen/bookgen-queue:0.1.0", "redis:7.2.5-alpine"}


@pytest.mark.parametrize(("ref", "split"), [
    ("redis:7", ("docker.io", "library/redis:7")),
    ("bitnami/redis:7", ("docker.io", "bitnami/redis:7")),
    ("ghcr.io/bookgen/x:1", ("ghcr.io", "bookgen/x:1")),
    ("localhost/x", ("localhost", "x")),
    ("host:5000/x@" + DIGEST, ("host:5000", "x@" + DIGEST)),
])
def test_registry_is_read_like_docker_reads_it(ref: str, split: tuple[str, str]) -> None:
    assert split_registry(ref) == split


def test_bad_digest_and_bad_labels_are_one_line_errors() -> None:
    with pytest.raises(SpecError, match=r"spec\.image\.digest"):
        parse_queue(queue({"image": {"digest": "latest"}}))
    with pytest.raises(SpecError, match="monitorLabels"):
        parse_queue(queue({"metrics": {"monitorLabels": {"release": "not valid!"}}}))
    with pytest.raises(SpecError, match="BOOKGEN_MONITOR_LABELS"):
        OperatorDefaults.from_env({"BOOKGEN_MONITOR_LABELS": "release"})


def test_monitor_labels_from_the_spec_or_the_chart_default() -> None:
    chart_default = OperatorDefaults.from_env({"BOOKGEN_MONITOR_LABELS": "release=kps"})
    default = chart_default.apply(parse_queue(queue()))
    for obj in monitoring_objects(default, True):
        assert obj["metadata"]["labels"]["release"] == "kps"
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "bookgen-operator"
    own = chart_default.apply(parse_queue(queue({"metrics": {"monitorLabels": {"release": "prom",
                                                                               "team": "books"}}})))
    for obj in monitoring_objects(own, True):
        assert {"release": "prom", "team": "books"}.items() <= obj["metadata"]["labels"].items()


def test_full_example_sets_the_new_fields() -> None:
    body = yaml.safe_load((ROOT / "examples" / "bookgenqueue-full.yaml").read_text())
    spec = parse_queue(body)
    assert spec.image.digest and spec.image_pull_secrets == ("registry-example-com",)
    assert spec.metrics.monitor_labels == {"release": "kps"}
