"""spec.exports: where finished books go, so they outlive the export pods (and the queue).

Exactly one of:
- `volumeClaim` (the default when nothing is set): a PersistentVolumeClaim the operator makes, named
  `<queue>-exports`, of the given class and size, mounted by every pod of the pools that consume the
  `export` queue. It is kept when the BookGenQueue is deleted (like the Redis claim): books are the
  product; a queue made again with the same name finds them again.
- `volume`: a volume the user names: `persistentVolumeClaim.claimName` (e.g. a ReadWriteMany claim
  shared with the application that reads the books), or `emptyDir` (books live as long as the pod).
- `s3`: an S3-compatible bucket (endpoint, bucket, prefix, region, addressing style, TLS check), with
  the access key id and secret key read from a Secret mounted as a volume.

Checked here with the same messages as the CRD's rules (tests/unit/test_spec.py holds them together).
"""

from __future__ import annotations

import re

from bookgen_operator.core.spec.model import ExportsClaim, ExportsS3, ExportsSpec, ExportsVolume, SpecError
from bookgen_operator.core.spec.reader import Reader, is_dns_label, quantity, show, url_like

ACCESS_MODES = ("ReadWriteOnce", "ReadWriteMany")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_SIZE = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")


def read_exports(spec: Reader) -> ExportsSpec:
    r = spec.obj("exports", ("volumeClaim", "volume", "s3"))
    given = [k for k in ("volumeClaim", "volume", "s3") if r.has(k)]
    if len(given) > 1:
        raise SpecError("spec.exports: exports names at most one of volumeClaim, volume, s3 "
                        f"(got {', '.join(given)})")
    if r.has("volume"):
        volume = r.obj("volume", ("persistentVolumeClaim", "emptyDir", "subPath"))
        return ExportsSpec(claim=None, volume=_volume(volume))
    if r.has("s3"):
        return ExportsSpec(claim=None, s3=_s3(r.obj("s3", (
            "endpoint", "bucket", "prefix", "region", "addressingStyle", "insecureSkipTLSVerify",
            "credentialsSecretRef"))))
    return ExportsSpec(claim=_claim(r.obj("volumeClaim", ("size", "storageClassName", "accessMode"))))


def _size(r: Reader, key: str, default: str) -> str:
    size = r.string(key, default)
    if not _SIZE.match(size):
        raise SpecError(f"{r.at(key)} must be a size such as 1Gi (got {show(size)})")
    return quantity(size, r.at(key))


def _claim(r: Reader) -> ExportsClaim:
    return ExportsClaim(
        size=_size(r, "size", "1Gi"),
        storage_class=r.string("storageClassName", "", max_len=253),
        access_mode=r.choice("accessMode", "ReadWriteOnce", ACCESS_MODES),
    )


def _volume(r: Reader) -> ExportsVolume:
    given = [k for k in ("persistentVolumeClaim", "emptyDir") if r.has(k)]
    if len(given) != 1:
        raise SpecError(f"{r.path}: exports.volume names exactly one of persistentVolumeClaim, emptyDir")
    sub_path = r.string("subPath", "", max_len=253)
    if sub_path.startswith("/") or ".." in sub_path.split("/"):
        raise SpecError(f"{r.path}: exports.volume.subPath must be a relative path without '..' (got {show(sub_path)})")
    if given[0] == "emptyDir":
        empty = r.obj("emptyDir", ("sizeLimit",))
        return ExportsVolume(empty_dir_size=_size(empty, "sizeLimit", "1Gi"), sub_path=sub_path)
    claim = r.obj("persistentVolumeClaim", ("claimName",))
    name = claim.string("claimName", "", min_len=1)
    if not all(is_dns_label(part) for part in name.split(".")):
        raise SpecError(f"{claim.at('claimName')} must be the name of a PersistentVolumeClaim (got {show(name)})")
    return ExportsVolume(claim_name=name, sub_path=sub_path)


def _s3(r: Reader) -> ExportsS3:
    if not r.has("bucket"):
        raise SpecError(f"{r.path}: bucket is required")
    bucket = r.string("bucket", "")
    if not _BUCKET.match(bucket):
        raise SpecError(f"{r.at('bucket')} must be a bucket name: 3-63 lower-case letters, digits, '.' and '-' "
                        f"(got {show(bucket)})")
    endpoint = r.string("endpoint", "", max_len=512)
    if endpoint and not url_like(endpoint, ("http://", "https://")):
        raise SpecError(f"{r.at('endpoint')} must be an http:// or https:// URL (got {show(endpoint)})")
    prefix = r.string("prefix", "", max_len=512)
    if prefix.startswith("/"):
        raise SpecError(f"{r.path}: exports.s3.prefix must not start with '/' (got {show(prefix)})")
    ref = r.obj("credentialsSecretRef", ("name", "accessKeyIdKey", "secretAccessKeyKey"))
    secret = ref.string("name", "", max_len=253)
    if r.has("credentialsSecretRef") and not secret:
        raise SpecError(f"{ref.path}: name is required")
    return ExportsS3(
        bucket=bucket, endpoint=endpoint, prefix=prefix, region=r.string("region", "", max_len=63),
        addressing_style=r.choice("addressingStyle", "path", ("path", "virtual")),
        insecure_skip_tls_verify=r.boolean("insecureSkipTLSVerify", False),
        secret_name=secret,
        access_key_id_key=ref.string("accessKeyIdKey", "accessKeyId", min_len=1),
        secret_access_key_key=ref.string("secretAccessKeyKey", "secretAccessKey", min_len=1),
    )
