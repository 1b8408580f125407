"""The bucket's client (boto3), and errors a user can act on.

Every upload sends the file's SHA-256 (`ChecksumSHA256`): the server refuses bytes that do not match, so
a file is either in the bucket whole and intact or not at all. A new file that must not replace another
(an export outside a job) is written with `If-None-Match: *` and takes the next free name when the
server answers 412, as two exports racing for one name in a folder do (content/exports.py).

An error becomes StorageError, a TransientError: the export task retries it with its backoff (a wrong
credential is fixed in the Secret, a bucket is created, an endpoint comes back), and the message names
the bucket, the endpoint and the server's own error code, never a credential.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..content.filenames import numbered
from ..errors import TransientError
from .target import ACCESS_KEY_FILE, SECRET_KEY_FILE, S3Target

if TYPE_CHECKING:
    from botocore.client import BaseClient

#: Error codes that mean the credentials are wrong: the message then says where they come from.
CREDENTIAL_CODES = frozenset({"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken",
                              "ExpiredToken", "Forbidden", "403"})
CHUNK = 1 << 20
_clients: dict[tuple[S3Target, str], BaseClient] = {}
_lock = threading.Lock()


class StorageError(TransientError):
    """The bucket refused or could not be reached; retried by the task's policy."""


def _read_credentials(target: S3Target) -> tuple[str, str] | None:
    """Read now, at every use: the kubelet updates a mounted Secret in place."""
    if target.credentials_dir is None:
        return None
    try:
        access = (target.credentials_dir / ACCESS_KEY_FILE).read_text().strip()
        secret = (target.credentials_dir / SECRET_KEY_FILE).read_text().strip()
    except OSError as exc:
        raise StorageError(f"cannot read the S3 credentials in {target.credentials_dir}: {exc.strerror}") from None
    if not access or not secret:
        raise StorageError(f"the S3 credentials in {target.credentials_dir} are empty")
    return access, secret


def client(target: S3Target) -> BaseClient:
    """A client for the target with the credentials as they are now (one per credential pair, reused)."""
    credentials = _read_credentials(target)
    tag = hashlib.sha256("\0".join(credentials or ()).encode()).hexdigest()
    with _lock:
        found = _clients.get((target, tag))
        if found is not None:
            return found
    import boto3
    from botocore.config import Config

    config = Config(
        s3={"addressing_style": target.addressing},
        # Our own retry policy (tasks/base.py) does the patient retrying; botocore only smooths blips.
        retries={"max_attempts": 2, "mode": "standard"},
        connect_timeout=10,
        read_timeout=60,
        # Checksums only where we send one (ChecksumSHA256 below): some S3-compatible servers refuse
        # the CRC32 trailers newer botocore adds by default.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    keys: dict[str, Any] = {}
    if credentials is not None:
        keys = {"aws_access_key_id": credentials[0], "aws_secret_access_key": credentials[1]}
    made = boto3.session.Session().client(
        "s3", endpoint_url=target.endpoint or None, region_name=target.region or "us-east-1",
        verify=target.verify_tls, config=config, **keys)
    with _lock:
        if len(_clients) > 8:  # old credential pairs
            _clients.clear()
        _clients[(target, tag)] = made
    return made


def describe(exc: BaseException, target: S3Target) -> str:
    """The server's error code and message, plus where to look when it is about credentials."""
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?"))
        text = f"{code}: {error.get('Message') or 'refused'}"
        if code in CREDENTIAL_CODES:
            source = (f"the Secret mounted at {target.credentials_dir}" if target.credentials_dir
                      else "the environment (AWS_ACCESS_KEY_ID, ...)")
            text += f" (check the access key id and secret key in {source})"
        return text
    if isinstance(exc, NoCredentialsError):
        return "no S3 credentials: set spec.exports.s3.credentialsSecretRef, or give the pods an identity"
    if isinstance(exc, EndpointConnectionError):
        return f"cannot reach the endpoint: {exc}"
    return f"{type(exc).__name__}: {exc}"


def upload(target: S3Target, path: Path, name: str, sha256: str, *, overwrite: bool) -> str:
    """Put the file at PREFIX+name (or the next free name); returns the key written."""
    from botocore.exceptions import BotoCoreError, ClientError

    checksum = base64.b64encode(bytes.fromhex(sha256)).decode()
    size = path.stat().st_size
    s3 = client(target)
    names = [name] if overwrite else [candidate.name for candidate in numbered(Path(name))]
    for candidate in names:
        key = target.key(candidate)
        condition = {} if overwrite else {"IfNoneMatch": "*"}
        try:
            with path.open("rb") as body:
                s3.put_object(Bucket=target.bucket, Key=key, Body=body, ContentLength=size,
                              ChecksumSHA256=checksum, Metadata={"sha256": sha256}, **condition)
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if not overwrite and (status == 412 or exc.response.get("Error", {}).get("Code") == "PreconditionFailed"):
                continue  # the name is taken: the next one
            raise StorageError(f"upload of {candidate} to {target.where()} failed: {describe(exc, target)}") from None
        except BotoCoreError as exc:
            raise StorageError(f"upload of {candidate} to {target.where()} failed: {describe(exc, target)}") from None
        return key
    raise StorageError(f"too many files named like {name} in {target.where()}; choose another file name")


def split_location(location: str) -> tuple[str, str]:
    """s3://bucket/key -> (bucket, key)."""
    rest = location.removeprefix("s3://")
    bucket, _, key = rest.partition("/")
    if not location.startswith("s3://") or not bucket or not key:
        raise ValueError(f"not an s3://bucket/key location: {location!r}")
    return bucket, key


def read(target: S3Target, location: str) -> Iterator[bytes]:
    """The object's bytes, in chunks; only objects of this target's bucket and prefix."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = split_location(location)
    if bucket != target.bucket or not key.startswith(target.prefix):
        raise StorageError(f"{location} is not in this queue's export bucket {target.where()}")
    try:
        body = client(target).get_object(Bucket=bucket, Key=key)["Body"]
        yield from body.iter_chunks(CHUNK)
    except (ClientError, BotoCoreError) as exc:
        raise StorageError(f"reading {location} failed: {describe(exc, target)}") from None
