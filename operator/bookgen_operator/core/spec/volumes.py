"""Extra volumes and mounts a user gives BookGen's processes: `volumes` and `volumeMounts`, queue-wide
(`spec.volumes`, every worker, beat and Flower) and per pool (`spec.pools[].volumes`, that pool's
workers), as Kubernetes takes them in a pod and a container. CA bundles, a ConfigMap of prompts, a
claim of reference texts, a projected service-account token for workload identity, a CSI secret store.

Checked here, with the field's path in every message: one source per volume, among those the Pod
Security "restricted" profile admits (hostPath and the like would be refused at the pod anyway), the
fields of each source and their types, unique names and mount paths, a mount names a volume it can see,
and nothing collides with the operator's own volumes (`RESERVED_NAMES`) or their mount points
(`RESERVED_PATHS`): /tmp holds the heartbeat the probes read, the output folder holds the books.
The contents of `items`/`sources` lists are left to the API server (it reports them in the queue's
status when it refuses the Deployment).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from bookgen_operator.core.objects import JSON
from bookgen_operator.core.spec.model import SpecError
from bookgen_operator.core.spec.pod_model import Volumes
from bookgen_operator.core.spec.reader import Reader, is_dns_label, quantity, show

MAX_VOLUMES = 32
#: The operator's own volumes and where they are mounted (tests/unit checks every builder against these).
#: /var/run/secrets/bookgen holds the bucket's credentials of spec.exports.s3 (resources/exports.py).
RESERVED_NAMES = frozenset({"tmp", "output", "s3-credentials"})
RESERVED_PATHS = ("/tmp", "/var/lib/bookgen/output", "/var/run/secrets/bookgen")
NAME_MESSAGE = "volume names tmp, output and s3-credentials are the operator's own"
PATH_MESSAGE = ("mountPath must not be /tmp, /var/lib/bookgen/output or /var/run/secrets/bookgen or below them: "
                "the operator mounts its own volumes there")
SOURCE_MESSAGE = ("a volume names exactly one source: secret, configMap, persistentVolumeClaim, emptyDir, "
                  "projected, csi or downwardAPI")
MOUNT_MESSAGE = "every volumeMount must name a volume of spec.volumes (or, in a pool, of the pool's volumes)"
#: Each source the restricted profile admits (but `ephemeral`), with its fields and the required ones.
_SOURCES: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] = MappingProxyType({
    "secret": (("secretName", "items", "defaultMode", "optional"), ("secretName",)),
    "configMap": (("name", "items", "defaultMode", "optional"), ("name",)),
    "persistentVolumeClaim": (("claimName", "readOnly"), ("claimName",)),
    "emptyDir": (("medium", "sizeLimit"), ()),
    "projected": (("sources", "defaultMode"), ("sources",)),
    "csi": (("driver", "readOnly", "fsType", "volumeAttributes", "nodePublishSecretRef"), ("driver",)),
    "downwardAPI": (("items", "defaultMode"), ()),
})  # fmt: skip


def read_volumes(r: Reader, inherited: Volumes | None = None) -> Volumes:
    """`volumes` and `volumeMounts` of the object `r` reads (the spec, or a pool); a pool's mounts may
    name the queue's volumes (`inherited`), and neither names nor mount paths may repeat the queue's."""
    base = inherited or Volumes()
    volumes = _volumes(r.value.get("volumes"), r.at("volumes"), {v["name"] for v in base.volumes})
    seen = {v["name"] for v in (*base.volumes, *volumes)}
    mounts = _mounts(r.value.get("volumeMounts"), r.at("volumeMounts"), seen, {m["mountPath"] for m in base.mounts})
    return Volumes(volumes, mounts)


def _items(raw: object, path: str) -> list[object]:
    if raw is None:
        return []
    if not isinstance(raw, list | tuple):
        raise SpecError(f"{path} must be a list (got {show(raw)})")
    if len(raw) > MAX_VOLUMES:
        raise SpecError(f"{path} must have at most {MAX_VOLUMES} entries (got {len(raw)})")
    return list(raw)


def _volumes(raw: object, path: str, taken: set[str]) -> tuple[JSON, ...]:
    out: list[JSON] = []
    for i, item in enumerate(_items(raw, path)):
        r = Reader(item, f"{path}[{i}]", ("name", *_SOURCES))
        name = r.string("name", "", min_len=1, max_len=63)
        if not is_dns_label(name):
            raise SpecError(f"{r.at('name')} must contain only lower-case letters, digits and '-' (got {show(name)})")
        if name in RESERVED_NAMES:
            raise SpecError(f"{r.at('name')}: {NAME_MESSAGE} (got {name})")
        if name in taken or any(v["name"] == name for v in out):
            raise SpecError(f"{r.at('name')}: a volume name is listed twice ({name})")
        given = [k for k in _SOURCES if r.has(k)]
        if len(given) != 1:
            raise SpecError(f"{r.path} ({name}): {SOURCE_MESSAGE}")
        out.append({"name": name, given[0]: _source(r, given[0])})
    return tuple(out)


def _source(r: Reader, kind: str) -> JSON:
    known, required = _SOURCES[kind]
    source = r.obj(kind, known)
    for name in required:
        if not source.has(name):
            raise SpecError(f"{source.path}: {name} is required")
    out: JSON = {}
    for raw_key, value in source.value.items():
        key, at = str(raw_key), source.at(str(raw_key))
        if key in ("optional", "readOnly"):
            out[key] = source.boolean(key, False)
        elif key == "defaultMode":
            out[key] = source.integer(key, 0o644, 0, 0o777)
        elif key == "sizeLimit":
            out[key] = quantity(value, at)
        elif key == "medium":
            out[key] = source.choice(key, "", ("", "Memory"))
        elif key in ("items", "sources"):
            out[key] = _objects(value, at)
        elif key == "volumeAttributes":
            out[key] = _string_map(value, at)
        elif key == "nodePublishSecretRef":
            out[key] = {"name": source.obj(key, ("name",)).string("name", "", min_len=1)}
        else:  # the names: secretName, name, claimName, driver, fsType
            out[key] = source.string(key, "", min_len=1)
    return out


def _objects(raw: object, path: str) -> list[JSON]:
    if not isinstance(raw, list | tuple) or not all(isinstance(item, Mapping) for item in raw):
        raise SpecError(f"{path} must be a list of objects (got {show(raw)})")
    return [_plain(item) for item in raw]


def _plain(value: object) -> JSON:
    """A deep copy of user data as plain dicts and lists (the API server checks the inside)."""
    def copy(v: object) -> object:
        if isinstance(v, Mapping):
            return {str(k): copy(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [copy(x) for x in v]
        return v

    result = copy(value)
    assert isinstance(result, dict)
    return result


def _string_map(raw: object, path: str) -> dict[str, str]:
    if not isinstance(raw, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
        raise SpecError(f"{path} must be a map of strings (got {show(raw)})")
    return dict(raw)


def _mounts(raw: object, path: str, volumes: set[str], taken_paths: set[str]) -> tuple[JSON, ...]:
    out: list[JSON] = []
    for i, item in enumerate(_items(raw, path)):
        r = Reader(item, f"{path}[{i}]", ("name", "mountPath", "subPath", "readOnly"))
        for required in ("name", "mountPath"):
            if not r.has(required):
                raise SpecError(f"{r.path}: {required} is required")
        name = r.string("name", "", min_len=1, max_len=63)
        if name not in volumes:
            raise SpecError(f"{r.at('name')}: {MOUNT_MESSAGE} (got {name})")
        mount_path = r.string("mountPath", "", min_len=2, max_len=1024)
        _check_path(mount_path, r.at("mountPath"))
        if mount_path in taken_paths or any(m["mountPath"] == mount_path for m in out):
            raise SpecError(f"{r.at('mountPath')}: a mountPath is listed twice ({mount_path})")
        mount: JSON = {"name": name, "mountPath": mount_path}
        if r.has("subPath"):
            sub = r.string("subPath", "", min_len=1, max_len=1024)
            if sub.startswith("/") or ".." in sub.split("/"):
                raise SpecError(f"{r.at('subPath')} must be a relative path without '..' (got {show(sub)})")
            mount["subPath"] = sub
        if r.has("readOnly"):
            mount["readOnly"] = r.boolean("readOnly", False)
        out.append(mount)
    return tuple(out)


def _check_path(mount_path: str, at: str) -> None:
    if not mount_path.startswith("/") or ":" in mount_path or ".." in mount_path.split("/"):
        raise SpecError(f"{at} must be an absolute path without ':' or '..' (got {show(mount_path)})")
    normal = mount_path.rstrip("/")
    if any(normal == ours or normal.startswith(ours + "/") for ours in RESERVED_PATHS):
        raise SpecError(f"{at}: {PATH_MESSAGE} (got {mount_path})")
