"""spec.exports: parsed with the CRD's defaults and messages, and what it puts in the manifests: the
claim (made, never owned, its spec never patched), the export pools' volume, mount, environment and
credentials volume; the other pools keep their scratch folder."""

from __future__ import annotations

from typing import Any

import pytest
from bookgen_operator.core.reconcile import adopt, plan
from bookgen_operator.core.resources import desired_objects
from bookgen_operator.core.resources.exports import S3_CREDENTIALS_DIR, bucket_env
from bookgen_operator.core.spec import ExportsClaim, ExportsS3, ExportsVolume, SpecError, parse_queue
from bookgen_operator.core.spec.environment import RESERVED

OWNER = {"apiVersion": "bookgen.io/v1alpha1", "kind": "BookGenQueue",
         "metadata": {"name": "bq", "namespace": "books", "uid": "u-1"}}


def spec(exports: dict[str, Any] | None = None) -> Any:
    body: dict[str, Any] = {"metadata": {"name": "bq", "namespace": "books"}, "spec": {}}
    if exports is not None:
        body["spec"]["exports"] = exports
    return parse_queue(body)


def objects(exports: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in desired_objects(spec(exports))}


def pod(objs: dict[str, dict[str, Any]], pool: str) -> dict[str, Any]:
    return dict(objs[f"Deployment/bq-worker-{pool}"]["spec"]["template"]["spec"])


def env_of(pod_spec: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value") for e in pod_spec["containers"][0]["env"]}


def test_unset_exports_is_a_claim_the_export_pool_mounts() -> None:
    assert spec().exports.claim == ExportsClaim() == spec({}).exports.claim
    objs = objects()
    claim = objs["PersistentVolumeClaim/bq-exports"]
    assert claim["spec"] == {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    export = pod(objs, "export")
    assert {"name": "output", "persistentVolumeClaim": {"claimName": "bq-exports"}} in export["volumes"]
    assert {"name": "output", "mountPath": "/var/lib/bookgen/output"} in export["containers"][0]["volumeMounts"]
    assert {"name": "output", "emptyDir": {"sizeLimit": "1Gi"}} in pod(objs, "content")["volumes"]


def test_the_claim_has_no_owner_and_its_spec_is_never_patched() -> None:
    claim = objects({"volumeClaim": {"size": "5Gi", "storageClassName": "fast", "accessMode": "ReadWriteMany"}})[
        "PersistentVolumeClaim/bq-exports"]
    assert claim["spec"]["storageClassName"] == "fast" and claim["spec"]["accessModes"] == ["ReadWriteMany"]
    adopted = adopt(claim, OWNER)
    assert "ownerReferences" not in adopted["metadata"] and adopted["metadata"]["namespace"] == "books"
    assert adopt(objects()["Service/bq-redis"], OWNER)["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    stored = {**adopted, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                                  "volumeName": "pv-1", "storageClassName": "local-path"}}
    key = ("v1", "PersistentVolumeClaim", "bq-exports")
    assert plan([adopted], {key: stored}) == [], "a claim made with other settings is left alone"
    relabelled = {**stored, "metadata": {**stored["metadata"], "labels": {}}}
    (action,) = plan([adopted], {key: relabelled})
    assert action.verb == "patch" and "spec" not in action.body


def test_a_named_volume_is_mounted_with_its_sub_path_and_no_claim_is_made() -> None:
    objs = objects({"volume": {"persistentVolumeClaim": {"claimName": "shared-books"}, "subPath": "bq"}})
    assert "PersistentVolumeClaim/bq-exports" not in objs
    export = pod(objs, "export")
    assert {"name": "output", "persistentVolumeClaim": {"claimName": "shared-books"}} in export["volumes"]
    assert {"name": "output", "mountPath": "/var/lib/bookgen/output", "subPath": "bq"} in \
        export["containers"][0]["volumeMounts"]
    assert spec({"volume": {"emptyDir": {}}}).exports.volume == ExportsVolume(empty_dir_size="1Gi")


def test_a_bucket_gives_the_export_pool_its_settings_and_a_refreshed_secret_volume() -> None:
    exports = {"s3": {"endpoint": "http://s3.storage:7070", "bucket": "books", "prefix": "bq/",
                      "insecureSkipTLSVerify": True, "credentialsSecretRef": {"name": "books-s3"}}}
    assert spec(exports).exports.s3 == ExportsS3(bucket="books", endpoint="http://s3.storage:7070", prefix="bq/",
                                                 insecure_skip_tls_verify=True, secret_name="books-s3")
    objs = objects(exports)
    assert "PersistentVolumeClaim/bq-exports" not in objs
    export = pod(objs, "export")
    env = env_of(export)
    assert (env["BOOKGEN_EXPORTS"], env["BOOKGEN_S3_BUCKET"], env["BOOKGEN_S3_VERIFY_TLS"]) == ("s3", "books", "false")
    assert env["BOOKGEN_S3_CREDENTIALS_DIR"] == S3_CREDENTIALS_DIR
    assert {"name": "s3-credentials", "secret": {"secretName": "books-s3", "items": [
        {"key": "accessKeyId", "path": "access-key-id"},
        {"key": "secretAccessKey", "path": "secret-access-key"}]}} in export["volumes"]
    mount = next(m for m in export["containers"][0]["volumeMounts"] if m["name"] == "s3-credentials")
    assert mount == {"name": "s3-credentials", "mountPath": S3_CREDENTIALS_DIR, "readOnly": True}  # no subPath
    assert {"name": "output", "emptyDir": {"sizeLimit": "1Gi"}} in export["volumes"]  # scratch
    assert "BOOKGEN_EXPORTS" not in env_of(pod(objs, "content"))
    assert all("secretKeyRef" not in str(e) or "books-s3" not in str(e) for e in export["containers"][0]["env"])
    assert {e["name"] for e in bucket_env(spec(exports))} | {"BOOKGEN_S3_CREDENTIALS_DIR"} <= RESERVED


@pytest.mark.parametrize(("exports", "fragment"), [
    ({"volumeClaim": {}, "volume": {"emptyDir": {}}}, "exports names at most one of volumeClaim, volume, s3"),
    ({"volume": {}}, "exports.volume names exactly one of persistentVolumeClaim, emptyDir"),
    ({"volume": {"emptyDir": {}, "subPath": "/abs"}}, "relative path without '..'"),
    ({"volume": {"emptyDir": {}, "subPath": "a/../b"}}, "relative path without '..'"),
    ({"volumeClaim": {"accessMode": "ReadWriteOncePod"}}, "spec.exports.volumeClaim.accessMode must be one of"),
    ({"volumeClaim": {"size": "lots"}}, "spec.exports.volumeClaim.size must be a size"),
    ({"s3": {}}, "spec.exports.s3: bucket is required"),
    ({"s3": {"bucket": "Books_2"}}, "spec.exports.s3.bucket must be a bucket name"),
    ({"s3": {"bucket": "books", "endpoint": "s3.example.com"}}, "must be an http:// or https:// URL"),
    ({"s3": {"bucket": "books", "credentialsSecretRef": {"accessKeyIdKey": "id"}}}, "name is required"),
    ({"s3": {"bucket": "books", "sessionToken": "x"}}, "unknown field(s) sessionToken"),
])
def test_mistakes_are_one_line_naming_the_field(exports: dict[str, Any], fragment: str) -> None:
    with pytest.raises(SpecError) as err:
        spec(exports)
    assert fragment in str(err.value) and "\n" not in str(err.value)
