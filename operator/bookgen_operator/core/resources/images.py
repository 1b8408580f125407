"""Where every child pulls its images from: one registry setting and pull Secrets for all of them.

Air-gapped and private clusters mirror images under their own registry: the operator-wide
`image_registry` (the chart's `global.imageRegistry`) replaces the registry of the BookGen image of every
child, and `redis_image_registry` (the chart's `redis.imageRegistry`, only when set) that of the managed
Redis, keeping the path (`ghcr.io/bookgen/bookgen-queue:0.1.0` -> `mirror.local/bookgen/bookgen-queue:0.1.0`;
Docker Hub's short names get their full path: `redis:7` -> `mirror.local/library/redis:7`), and tags
and digests are kept. `image_pull_secrets` reach the pod spec of every workload.
"""

from __future__ import annotations

from bookgen_operator.core.objects import JSON
from bookgen_operator.core.spec import QueueSpec


def split_registry(ref: str) -> tuple[str, str]:
    """('registry', 'path[:tag][@digest]') the way Docker reads a reference: the first component is a
    registry only if it has a '.' or ':' or is 'localhost'; otherwise the image is on Docker Hub."""
    first, _, rest = ref.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first, rest
    return "docker.io", ref if rest else f"library/{ref}"


def moved(ref: str, registry: str) -> str:
    """`ref` pulled from `registry` instead, its path kept ("" = as written)."""
    return f"{registry.rstrip('/')}/{split_registry(ref)[1]}" if registry else ref


def child_image(spec: QueueSpec, ref: str) -> str:
    """The BookGen image (workers, beat, Flower) as this operator pulls it."""
    return moved(ref, spec.image_registry)


def redis_image(spec: QueueSpec) -> str:
    return moved(spec.redis.image, spec.redis_image_registry)


def pull_secrets(spec: QueueSpec) -> JSON:
    """Pod spec fields for the pull Secrets ({} when none, so nothing changes for public images)."""
    if not spec.image_pull_secrets:
        return {}
    return {"imagePullSecrets": [{"name": name} for name in spec.image_pull_secrets]}
