"""Where the export pools keep finished books (spec.exports): the claim the operator makes, and the
volume, mount and environment of every pod of a pool that consumes the `export` queue.

The claim `<queue>-exports` carries no owner reference (`RETAIN_ANNOTATION`): deleting the BookGenQueue
keeps it, as the Redis claim is kept (`whenDeleted: Retain`), because the books are what the queue was
for. A queue made again under the same name mounts it again. Its spec is made once and never patched
(a claim's spec is immutable but for growing it, which not every class allows): a later change of
size or class in the BookGenQueue does not touch an existing claim (docs/exports.md).

Access modes: ReadWriteOnce (the default, what every provisioner offers, rancher's local-path
included) lets every pod *on one node* mount the claim, so all the export pods share that node; with a
node-local provisioner (local-path) the scheduler places them there by itself, elsewhere a pod landing
on another node waits in ContainerCreating (Multi-Attach). For an export pool spread over nodes use
ReadWriteMany (an RWX class: NFS, CephFS, EFS, Filestore) or a bucket. ReadWriteOncePod is refused:
a rolling update and every second replica need two pods to mount the claim at once.

Pools that do not consume `export` keep their scratch emptyDir: they never write a book.
"""

from __future__ import annotations

from bookgen_operator.core.objects import JSON
from bookgen_operator.core.reconcile import RETAIN_ANNOTATION
from bookgen_operator.core.resources.labels import labels
from bookgen_operator.core.spec import PoolSpec, QueueSpec

EXPORT_QUEUE = "export"
COMPONENT = "exports"
OUTPUT_DIR = "/var/lib/bookgen/output"
S3_CREDENTIALS_DIR = "/var/run/secrets/bookgen/s3"
SCRATCH_SIZE = "1Gi"


def exports_claim_name(spec: QueueSpec) -> str:
    return f"{spec.name}-exports"


def writes_exports(pool: PoolSpec) -> bool:
    return EXPORT_QUEUE in pool.queues


def build_exports_claim(spec: QueueSpec) -> JSON | None:
    claim = spec.exports.claim
    if claim is None:
        return None
    body: JSON = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": exports_claim_name(spec), "namespace": spec.namespace,
                     "labels": labels(spec, COMPONENT), "annotations": {RETAIN_ANNOTATION: "true"}},
        "spec": {"accessModes": [claim.access_mode], "resources": {"requests": {"storage": claim.size}}},
    }
    if claim.storage_class:
        body["spec"]["storageClassName"] = claim.storage_class
    return body


def output_volume(spec: QueueSpec, pool: PoolSpec) -> JSON:
    """The pod's `output` volume: the export volume for an export pool, else scratch (and scratch for
    the files an export pool renders before uploading them to a bucket)."""
    exports = spec.exports
    if not writes_exports(pool) or exports.s3 is not None:
        return {"name": "output", "emptyDir": {"sizeLimit": SCRATCH_SIZE}}
    if exports.claim is not None:
        return {"name": "output", "persistentVolumeClaim": {"claimName": exports_claim_name(spec)}}
    volume = exports.volume
    assert volume is not None
    if volume.claim_name:
        return {"name": "output", "persistentVolumeClaim": {"claimName": volume.claim_name}}
    return {"name": "output", "emptyDir": {"sizeLimit": volume.empty_dir_size}}


def output_mount(spec: QueueSpec, pool: PoolSpec) -> JSON:
    mount: JSON = {"name": "output", "mountPath": OUTPUT_DIR}
    volume = spec.exports.volume
    if writes_exports(pool) and volume is not None and volume.sub_path:
        mount["subPath"] = volume.sub_path
    return mount


def s3_env(spec: QueueSpec, pool: PoolSpec) -> list[JSON]:
    """The bucket's settings for an export pool's workers (storage/target.py reads them)."""
    if not writes_exports(pool):
        return []
    env = bucket_env(spec)
    if env and spec.exports.s3 is not None and spec.exports.s3.secret_name:
        env.append({"name": "BOOKGEN_S3_CREDENTIALS_DIR", "value": S3_CREDENTIALS_DIR})
    return env


def bucket_env(spec: QueueSpec) -> list[JSON]:
    """The bucket's settings without credentials (`bookgen up` takes those from its own environment)."""
    bucket = spec.exports.s3
    if bucket is None:
        return []
    return [
        {"name": "BOOKGEN_EXPORTS", "value": "s3"},
        {"name": "BOOKGEN_S3_BUCKET", "value": bucket.bucket},
        {"name": "BOOKGEN_S3_ENDPOINT", "value": bucket.endpoint},
        {"name": "BOOKGEN_S3_PREFIX", "value": bucket.prefix},
        {"name": "BOOKGEN_S3_REGION", "value": bucket.region},
        {"name": "BOOKGEN_S3_ADDRESSING", "value": bucket.addressing_style},
        {"name": "BOOKGEN_S3_VERIFY_TLS", "value": "false" if bucket.insecure_skip_tls_verify else "true"},
    ]


def s3_credentials(spec: QueueSpec, pool: PoolSpec) -> tuple[list[JSON], list[JSON]]:
    """(volumes, mounts) of the bucket's Secret: a volume, not env, because the kubelet refreshes a mounted
    Secret in place (within its sync period) and the worker reads it at every upload, so a fixed
    credential works at the next retry without restarting a pod. Not a subPath mount: those are never
    refreshed."""
    bucket = spec.exports.s3
    if bucket is None or not bucket.secret_name or not writes_exports(pool):
        return [], []
    volume = {"name": "s3-credentials", "secret": {"secretName": bucket.secret_name, "items": [
        {"key": bucket.access_key_id_key, "path": "access-key-id"},
        {"key": bucket.secret_access_key_key, "path": "secret-access-key"},
    ]}}
    return [volume], [{"name": "s3-credentials", "mountPath": S3_CREDENTIALS_DIR, "readOnly": True}]
