"""The export target, read from the environment once with the rest of the settings (config.py).

`BOOKGEN_EXPORTS=local` (the default) keeps each file in BOOKGEN_OUTPUT_DIR: on Kubernetes that folder is
the export volume (a claim the operator made, or one the user named), so the path recorded for a job is
a path on that volume. `BOOKGEN_EXPORTS=s3` renders into BOOKGEN_OUTPUT_DIR as scratch and uploads to
`s3://BUCKET/PREFIX<file name>`.

The S3 credentials are never part of the settings: they are read from BOOKGEN_S3_CREDENTIALS_DIR (a
Secret mounted as a volume, files `access-key-id` and `secret-access-key`) at every upload, because the
kubelet refreshes a mounted Secret in place: a credential fixed in the Secret is used by the next retry
without restarting a pod. Without that folder boto3's own chain applies (AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY, a web identity token, an instance profile), which is how workload identity works.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..config import ConfigError

ACCESS_KEY_FILE = "access-key-id"
SECRET_KEY_FILE = "secret-access-key"
Addressing = Literal["path", "virtual"]


@dataclass(frozen=True)
class S3Target:
    bucket: str
    endpoint: str = ""  # "" = AWS's own endpoint for the region
    prefix: str = ""
    region: str = ""
    addressing: Addressing = "path"
    verify_tls: bool = True
    credentials_dir: Path | None = field(default=None)

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def location(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def where(self) -> str:
        """The bucket and endpoint, for messages (never a credential)."""
        return f"s3://{self.bucket}/{self.prefix}" + (f" at {self.endpoint}" if self.endpoint else "")


@dataclass(frozen=True)
class ExportTarget:
    kind: Literal["local", "s3"] = "local"
    s3: S3Target | None = None


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false (got {raw!r})")


def target_from_env(env: Mapping[str, str]) -> ExportTarget:
    kind = env.get("BOOKGEN_EXPORTS", "").strip().lower() or "local"
    if kind == "local":
        return ExportTarget()
    if kind != "s3":
        raise ConfigError(f"BOOKGEN_EXPORTS must be 'local' or 's3' (got {kind!r})")
    bucket = env.get("BOOKGEN_S3_BUCKET", "").strip()
    if not bucket:
        raise ConfigError("BOOKGEN_EXPORTS=s3 needs BOOKGEN_S3_BUCKET")
    endpoint = env.get("BOOKGEN_S3_ENDPOINT", "").strip()
    if endpoint and not endpoint.startswith(("http://", "https://")):
        raise ConfigError(f"BOOKGEN_S3_ENDPOINT must be an http:// or https:// URL (got {endpoint!r})")
    addressing = env.get("BOOKGEN_S3_ADDRESSING", "").strip() or "path"
    if addressing not in ("path", "virtual"):
        raise ConfigError(f"BOOKGEN_S3_ADDRESSING must be 'path' or 'virtual' (got {addressing!r})")
    prefix = env.get("BOOKGEN_S3_PREFIX", "").strip().lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    credentials = env.get("BOOKGEN_S3_CREDENTIALS_DIR", "").strip()
    return ExportTarget("s3", S3Target(
        bucket=bucket, endpoint=endpoint.rstrip("/"), prefix=prefix, region=env.get("BOOKGEN_S3_REGION", "").strip(),
        addressing="virtual" if addressing == "virtual" else "path",
        verify_tls=_flag(env, "BOOKGEN_S3_VERIFY_TLS", True),
        credentials_dir=Path(credentials) if credentials else None,
    ))
