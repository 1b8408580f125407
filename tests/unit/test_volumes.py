"""spec.volumes/volumeMounts and a pool's: what parse_queue accepts and refuses, where the builders put
them (every BookGen container of the queue; a pool's only in its workers; never Redis), and that
nothing of the user's can land on the operator's own volumes."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from bookgen_operator.core.resources import desired_objects, pod_specs
from bookgen_operator.core.spec import QueueSpec, SpecError, parse_queue
from bookgen_operator.core.spec.defaults import DEFAULT_POOLS
from bookgen_operator.core.spec.volumes import RESERVED_NAMES, RESERVED_PATHS

from tests.support.pod_security import restricted_violations

EVERY_SOURCE = [
    {"name": "prompts", "secret": {"secretName": "prompts", "items": [{"key": "a", "path": "a.txt"}],
                                   "defaultMode": 0o440, "optional": True}},
    {"name": "ca", "configMap": {"name": "ca-bundle", "optional": True}},
    {"name": "library", "persistentVolumeClaim": {"claimName": "library", "readOnly": True}},
    {"name": "scratch", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
    {"name": "identity", "projected": {"sources": [
        {"serviceAccountToken": {"audience": "llm.example.com", "expirationSeconds": 3600, "path": "token"}}]}},
    {"name": "vault", "csi": {"driver": "secrets-store.csi.k8s.io", "readOnly": True,
                              "volumeAttributes": {"secretProviderClass": "llm"}}},
    {"name": "info", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
]
MOUNTS = [{"name": v["name"], "mountPath": f"/srv/{v['name']}", "readOnly": True} for v in EVERY_SOURCE]


def queue(spec: dict[str, Any]) -> QueueSpec:
    return parse_queue({"metadata": {"name": "q", "namespace": "books", "uid": "u"}, "spec": spec})


def pools_with(name: str, **fields: Any) -> list[dict[str, Any]]:
    pools = copy.deepcopy(DEFAULT_POOLS)
    next(p for p in pools if p["name"] == name).update(fields)
    return pools


def workloads(spec: QueueSpec) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in desired_objects(spec) if o["kind"] in ("Deployment", "StatefulSet")}


def test_queue_volumes_reach_every_bookgen_pod_after_ours_and_not_redis() -> None:
    for name, workload in workloads(queue({"volumes": EVERY_SOURCE, "volumeMounts": MOUNTS})).items():
        pod = workload["spec"]["template"]["spec"]
        names = [v["name"] for v in pod["volumes"]]
        mounts = pod["containers"][0]["volumeMounts"]
        if name == "q-redis":
            assert not set(names) & {v["name"] for v in EVERY_SOURCE}
            continue
        assert names[-len(EVERY_SOURCE):] == [v["name"] for v in EVERY_SOURCE], name
        assert names[0] == "tmp" and mounts[0] == {"name": "tmp", "mountPath": "/tmp"}, f"{name}: ours first"
        assert mounts[-len(MOUNTS):] == MOUNTS, name


def test_a_pools_volumes_reach_only_its_workers_and_may_mount_the_queues() -> None:
    spec = queue({"volumes": [EVERY_SOURCE[1]],
                  "pools": pools_with("content", volumes=[EVERY_SOURCE[2]], volumeMounts=[
                      {"name": "library", "mountPath": "/srv/library"}, {"name": "ca", "mountPath": "/etc/ssl/ca"}])})
    found = workloads(spec)
    content = found["q-worker-content"]["spec"]["template"]["spec"]
    assert [v["name"] for v in content["volumes"]] == ["tmp", "output", "ca", "library"]
    assert [m["mountPath"] for m in content["containers"][0]["volumeMounts"]][-2:] == ["/srv/library", "/etc/ssl/ca"]
    for name in ("q-worker-validation", "q-beat", "q-flower"):
        assert "library" not in [v["name"] for v in found[name]["spec"]["template"]["spec"]["volumes"]], name


def test_every_source_passes_the_restricted_profile() -> None:
    spec = queue({"volumes": EVERY_SOURCE, "volumeMounts": MOUNTS})
    for name, pod_spec in pod_specs(desired_objects(spec)):
        assert restricted_violations(pod_spec) == [], name


def test_the_operators_own_volumes_are_the_reserved_ones() -> None:
    """The names and mount points the parser refuses are those the builders use (and the list cannot drift)."""
    bucket = {"exports": {"s3": {"bucket": "books", "endpoint": "https://s3.example.com",
                                 "credentialsSecretRef": {"name": "s3"}}}}
    for name, workload in [*workloads(queue({})).items(), *workloads(queue(bucket)).items()]:
        if name == "q-redis":
            continue
        pod = workload["spec"]["template"]["spec"]
        assert {v["name"] for v in pod["volumes"]} <= RESERVED_NAMES, name
        for mount in pod["containers"][0]["volumeMounts"]:
            path = mount["mountPath"]
            assert any(path == ours or path.startswith(ours + "/") for ours in RESERVED_PATHS), (name, path)


@pytest.mark.parametrize(("spec", "message"), [
    ({"volumes": [{"name": "tmp", "emptyDir": {}}]}, "spec.volumes[0].name: volume names tmp, output and "
     "s3-credentials are the operator's own (got tmp)"),
    ({"volumes": [{"name": "x", "emptyDir": {}}], "volumeMounts": [{"name": "x", "mountPath": "/tmp"}]},
     "spec.volumeMounts[0].mountPath: mountPath must not be /tmp, /var/lib/bookgen/output"),
    ({"volumes": [{"name": "x", "emptyDir": {}}],
      "volumeMounts": [{"name": "x", "mountPath": "/var/lib/bookgen/output/books"}]}, "or below them"),
    ({"volumes": [{"name": "x", "emptyDir": {}}], "volumeMounts": [{"name": "x", "mountPath": "relative"}]},
     "must be an absolute path"),
    ({"volumes": [{"name": "x", "emptyDir": {}}],
      "volumeMounts": [{"name": "x", "mountPath": "/a", "subPath": "../etc"}]}, "must be a relative path without"),
    ({"volumes": [{"name": "x", "hostPath": {"path": "/"}}]}, "spec.volumes[0]: unknown field(s) hostPath"),
    ({"volumes": [{"name": "x"}]}, "spec.volumes[0] (x): a volume names exactly one source"),
    ({"volumes": [{"name": "x", "emptyDir": {}}, {"name": "x", "emptyDir": {}}]}, "a volume name is listed twice (x)"),
    ({"volumes": [{"name": "x", "secret": {}}]}, "spec.volumes[0].secret: secretName is required"),
    ({"volumes": [{"name": "x", "emptyDir": {"sizeLimit": "lots"}}]}, "spec.volumes[0].emptyDir.sizeLimit must be"),
    ({"volumes": [{"name": "x", "secret": {"secretName": "s", "defaultMode": 1000}}]},
     "spec.volumes[0].secret.defaultMode must be from 0 to 511"),
    ({"volumeMounts": [{"name": "nowhere", "mountPath": "/a"}]}, "spec.volumeMounts[0].name: every volumeMount "
     "must name a volume of spec.volumes"),
    ({"volumes": [{"name": "a", "emptyDir": {}}, {"name": "b", "emptyDir": {}}],
      "volumeMounts": [{"name": "a", "mountPath": "/d"}, {"name": "b", "mountPath": "/d"}]},
     "a mountPath is listed twice (/d)"),
])  # fmt: skip
def test_bad_volumes_are_refused_in_one_line_naming_the_field(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as err:
        queue(spec)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_pool_cannot_repeat_the_queues_names_or_mount_points() -> None:
    base = {"volumes": [{"name": "ca", "configMap": {"name": "ca"}}],
            "volumeMounts": [{"name": "ca", "mountPath": "/etc/ca"}]}
    with pytest.raises(SpecError, match=r"spec.pools\[0\].volumes\[0\].name: a volume name is listed twice"):
        queue({**base, "pools": pools_with("content", volumes=[{"name": "ca", "emptyDir": {}}])})
    with pytest.raises(SpecError, match=r"spec.pools\[1\].volumeMounts\[0\].mountPath: a mountPath is listed twice"):
        queue({**base, "pools": pools_with("validation", volumeMounts=[{"name": "ca", "mountPath": "/etc/ca"}])})


def test_a_change_of_one_pools_volumes_changes_only_that_pools_deployment() -> None:
    before = {(o["kind"], o["metadata"]["name"]): o for o in desired_objects(queue({}))}
    after = {(o["kind"], o["metadata"]["name"]): o for o in desired_objects(queue({"pools": pools_with(
        "export", volumes=[{"name": "s", "emptyDir": {}}], volumeMounts=[{"name": "s", "mountPath": "/s"}])}))}
    assert [key for key in before if before[key] != after[key]] == [("Deployment", "q-worker-export")]
