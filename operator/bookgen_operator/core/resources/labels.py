"""Names, labels and selectors shared by every child of a BookGenQueue.

Selectors use only labels that never change for the life of the object (name, instance, component,
pool), because a Deployment's or StatefulSet's selector is immutable.
"""

from __future__ import annotations

from bookgen_operator.core.objects import JSON
from bookgen_operator.core.spec import PoolSpec, QueueSpec

NAME = "bookgen"
PART_OF = "bookgen"
MANAGED_BY = "bookgen-operator"
POOL_LABEL = "bookgen.io/pool"
#: On worker Deployments: who owns spec.replicas once the Deployment exists ("autoscaler" | "reconcile").
REPLICAS_OWNER_ANNOTATION = "bookgen.io/replicas-owner"

REDIS_PORT = 6379
FLOWER_PORT = 5555

#: Numeric ids for the restricted pod security profile (runAsNonRoot needs a numeric, non-zero user).
#: The BookGen image runs as 10001; the official redis image's `redis` user is 999.
APP_UID = 10001
REDIS_UID = 999


def labels(spec: QueueSpec, component: str, pool: PoolSpec | None = None) -> dict[str, str]:
    out = {
        "app.kubernetes.io/name": NAME,
        "app.kubernetes.io/instance": spec.name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }
    if pool is not None:
        out[POOL_LABEL] = pool.name
    return out


def selector(spec: QueueSpec, component: str, pool: PoolSpec | None = None) -> dict[str, str]:
    out = {
        "app.kubernetes.io/name": NAME,
        "app.kubernetes.io/instance": spec.name,
        "app.kubernetes.io/component": component,
    }
    if pool is not None:
        out[POOL_LABEL] = pool.name
    return out


def instance_selector(spec: QueueSpec) -> dict[str, str]:
    """Every pod of this BookGenQueue (workers, beat, Flower, Redis)."""
    return {"app.kubernetes.io/name": NAME, "app.kubernetes.io/instance": spec.name}


def metadata(spec: QueueSpec, name: str, component: str, pool: PoolSpec | None = None) -> JSON:
    return {"name": name, "namespace": spec.namespace, "labels": labels(spec, component, pool)}


# -- child names (users, the chart's docs and the tests rely on them: never rename) ---------------------


def redis_name(spec: QueueSpec) -> str:
    return f"{spec.name}-redis"


def redis_headless_name(spec: QueueSpec) -> str:
    return f"{spec.name}-redis-headless"


def worker_name(spec: QueueSpec, pool: PoolSpec | str) -> str:
    return f"{spec.name}-worker-{pool if isinstance(pool, str) else pool.name}"


def beat_name(spec: QueueSpec) -> str:
    return f"{spec.name}-beat"


def flower_name(spec: QueueSpec) -> str:
    return f"{spec.name}-flower"


def metrics_name(spec: QueueSpec) -> str:
    return f"{spec.name}-metrics"
