"""The Kubernetes actuator: a pool's replicas are `spec.replicas` of Deployment `<cr>-worker-<pool>`.

The autoscaler is the only writer of that field (reconcile leaves it alone once the Deployment
exists). Before a scale-in, busy pods get `controller.kubernetes.io/pod-deletion-cost` high and
idle ones lose any earlier mark, so the ReplicaSet controller removes idle pods; the target never
goes below the number of busy workers, so no running task is killed by scaling. Removed pods get
SIGTERM (warm shutdown) with a grace period covering the hard time limit (core/resources/workers.py).

Busy pods come from the worker registry in Redis (pods whose worker reports busy > 0). When Redis
cannot be read, busy workers are unknown and the loop treats every worker as busy (no scale-in).

Replicas are read from the operator's watch of worker Deployments (ReplicaCache, filled by the child
event handler; WatchedPlatform): a poll reads no Deployment, and only a write GETs one first.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from bookgen_operator.controller.client import RESOURCES, Kube, KubeError
from bookgen_operator.core.autoscaler.platform import BusyUnknown, Platform, PlatformError

DEPLOYMENTS = RESOURCES[("apps/v1", "Deployment")]
PODS = RESOURCES[("v1", "Pod")]
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
#: Busy pods are removed last; int32 range, far above the default 0 of unmarked pods.
BUSY_COST = "1000000"
POOL_LABEL = "bookgen.io/pool"

#: Returns the worker registry: (pool, pod, busy slots) of every live worker.
RegistryReader = Callable[[], Awaitable[Sequence[tuple[str, str, int]]]]


class KubernetesPlatform:
    def __init__(self, kube: Kube, namespace: str, queue: str, registry: RegistryReader | None) -> None:
        self.kube = kube
        self.namespace = namespace
        self.queue = queue
        self.registry = registry

    def deployment(self, pool: str) -> str:
        return f"{self.queue}-worker-{pool}"

    def pod_selector(self, pool: str) -> str:
        return (f"app.kubernetes.io/name=bookgen,app.kubernetes.io/instance={self.queue},"
                f"app.kubernetes.io/component=worker,{POOL_LABEL}={pool}")

    async def replicas(self, pool: str) -> int:
        try:
            obj = await self.kube.get(DEPLOYMENTS, self.namespace, self.deployment(pool))
        except (KubeError, OSError) as exc:
            raise PlatformError(f"cannot read Deployment {self.deployment(pool)}: {exc}") from exc
        if obj is None:
            raise PlatformError(f"Deployment {self.deployment(pool)} does not exist yet")
        value = (obj.get("spec") or {}).get("replicas")
        return 1 if value is None else int(value)  # the API server's default

    async def busy_workers(self, pool: str) -> list[str]:
        if self.registry is None:
            raise BusyUnknown("no worker registry")
        try:
            workers = await self.registry()
        except Exception as exc:
            raise BusyUnknown(f"cannot read the worker registry: {exc}") from exc
        return sorted({pod for p, pod, busy in workers if p == pool and busy > 0})

    async def mark_pods(self, pool: str, busy: Sequence[str]) -> None:
        """Busy pods: high deletion cost; idle pods: no mark. Writes only pods whose mark differs."""
        busy_set = set(busy)
        for pod in await self.kube.list(PODS, self.namespace, self.pod_selector(pool)):
            meta = pod.get("metadata") or {}
            have = (meta.get("annotations") or {}).get(DELETION_COST)
            want = BUSY_COST if meta.get("name") in busy_set else None
            if have == want:
                continue
            try:
                patch = {"metadata": {"annotations": {DELETION_COST: want}}}
                await self.kube.patch(PODS, self.namespace, meta["name"], patch)
            except KubeError as exc:
                if exc.code != 404:  # a pod that just went away needs no mark
                    raise

    async def scale(self, pool: str, replicas: int, busy: Sequence[str]) -> None:
        target = max(replicas, len(busy))  # never below the busy workers, whatever the caller says
        try:
            if target < await self.replicas(pool):
                await self.mark_pods(pool, busy)
            await self.kube.patch(DEPLOYMENTS, self.namespace, self.deployment(pool), {"spec": {"replicas": target}})
        except (KubeError, OSError) as exc:
            raise PlatformError(f"cannot scale Deployment {self.deployment(pool)}: {exc}") from exc


class ReplicaCache:
    """`spec.replicas` of worker Deployments as the operator's watch last saw them, by (namespace, name)."""

    def __init__(self) -> None:
        self._replicas: dict[tuple[str, str], int] = {}

    def seen(self, namespace: str, name: str, replicas: int | None) -> None:
        """From a watch event (ADDED/MODIFIED); `replicas` None is the API server's default of 1."""
        self._replicas[(namespace, name)] = 1 if replicas is None else int(replicas)

    def gone(self, namespace: str, name: str) -> None:
        self._replicas.pop((namespace, name), None)

    def get(self, namespace: str, name: str) -> int | None:
        return self._replicas.get((namespace, name))


class WatchedPlatform:
    """A platform whose `replicas()` reads the watch cache; the inner platform is asked only on a miss.

    `scale()` goes to the inner platform (the Kubernetes one GETs the Deployment before a scale-in) and
    records the count it wrote, so the next poll does not act on the count from before its own write.
    """

    def __init__(self, inner: Platform, cache: ReplicaCache, namespace: str, deployment: Callable[[str], str]) -> None:
        self.inner, self.cache, self.namespace, self.deployment = inner, cache, namespace, deployment

    async def replicas(self, pool: str) -> int:
        cached = self.cache.get(self.namespace, self.deployment(pool))
        if cached is not None:
            return cached
        value = await self.inner.replicas(pool)
        self.cache.seen(self.namespace, self.deployment(pool), value)
        return value

    async def busy_workers(self, pool: str) -> list[str]:
        return await self.inner.busy_workers(pool)

    async def scale(self, pool: str, replicas: int, busy: Sequence[str]) -> None:
        await self.inner.scale(pool, replicas, busy)
        self.cache.seen(self.namespace, self.deployment(pool), max(replicas, len(busy)))
