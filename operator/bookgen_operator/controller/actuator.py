"""The Kubernetes platform: a pool's replicas are `spec.replicas` of Deployment `<cr>-worker-<pool>`.

The autoscaler is the only writer of that field (reconcile leaves it alone once the Deployment
exists). Before a scale-in, busy pods get `controller.kubernetes.io/pod-deletion-cost` high and
idle ones lose any earlier mark, so the ReplicaSet controller removes idle pods; the target never
goes below the number of busy workers, so no running task is killed by scaling. Removed pods get
SIGTERM (warm shutdown) with a grace period covering the hard time limit (resources/workers.py).

Busy pods come from the worker registry in Redis (pods whose worker reports busy > 0). When Redis
cannot be read, busy workers are unknown and the loop treats every worker as busy (no scale-in).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from bookgen_operator.controller.client import RESOURCES, Kube, KubeError, decoded
from bookgen_operator.core.autoscaler.loop import Autoscaler, PoolStatus
from bookgen_operator.core.autoscaler.platform import BusyUnknown, PlatformError

log = logging.getLogger(__name__)

DEPLOYMENTS = RESOURCES[("apps/v1", "Deployment")]
PODS = RESOURCES[("v1", "Pod")]
SECRETS = RESOURCES[("v1", "Secret")]
BGQ = RESOURCES[("bookgen.io/v1alpha1", "BookGenQueue")]
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


# ------------------------------------------------------------------------- the operator's entry point


async def _redis_url(spec: Any, kube: Kube) -> str:
    from bookgen_worker.config import settings_from_env

    secret = await kube.get(SECRETS, spec.namespace, spec.redis_secret_name)
    password = decoded(secret, spec.redis.password_secret_key) if secret else None
    if password is None:
        raise BusyUnknown(f"Secret {spec.redis_secret_name} has no key {spec.redis.password_secret_key}")
    url = spec.redis.url if not spec.redis.managed else f"redis://{spec.name}-redis.{spec.namespace}.svc:6379/0"
    return settings_from_env({"REDIS_URL": url, "REDIS_PASSWORD": password}).redis_url


class RedisAccess:
    """A lazily connected Redis client for the worker registry (and the redis source)."""

    def __init__(self, spec: Any, kube: Kube) -> None:
        self.spec, self.kube = spec, kube
        self.client: Any = None
        self.settings: Any = None

    async def connect(self) -> tuple[Any, Any]:
        if self.client is None:
            import redis
            from bookgen_worker.config import settings_from_env

            url = await _redis_url(self.spec, self.kube)
            self.settings = settings_from_env({"REDIS_URL": url})
            self.client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        return self.client, self.settings

    def drop(self) -> None:
        """Forget the client, closing its connections first (dropping it alone leaked them until GC)."""
        client, self.client = self.client, None
        if client is not None:
            try:
                client.close()
            except Exception as exc:  # closing a broken connection may fail too; it is gone either way
                log.debug("closing the Redis client failed: %s", exc)

    async def registry(self) -> list[tuple[str, str, int]]:
        from bookgen_worker.metrics.workers import read_workers

        from bookgen_operator.controller.scheduler import redis_executor

        client, settings = await self.connect()
        try:
            workers = await asyncio.get_running_loop().run_in_executor(redis_executor(), read_workers, client,
                                                                       settings)
        except Exception:
            self.drop()  # reconnect (and re-read the password) next time
            raise
        return [(w.pool, w.pod, w.busy) for w in workers]


class AccessRedisSource:
    """The Redis metrics source of one BookGenQueue, connected through its RedisAccess when first asked.

    Until the Secret can be read and Redis reached, every pool is unknown (never zero). One RedisSource
    per client: it keeps the rate state (service time, arrivals) across polls. With `asynchronous` (the
    operator's scheduler) it polls through a `redis.asyncio` client of its own, made in the loop that
    polls (an asyncio client belongs to one loop) and closed by `close()`; otherwise through the
    access's blocking client in a thread (`executor`; None = asyncio.to_thread)."""

    def __init__(self, access: RedisAccess, executor: Any = None, *, asynchronous: bool = False) -> None:
        # Imported here, when the queue's autoscaler is built, not in its first poll: the first import
        # (redis, bookgen_worker.metrics) takes seconds of CPU, and every lane waited for it.
        import redis.asyncio

        from bookgen_operator.sources.redis_source import RedisSource

        self.access, self.executor, self.asynchronous = access, executor, asynchronous
        self._source_class, self._async_redis = RedisSource, redis.asyncio.Redis
        self.inner: Any = None
        self._async_client: Any = None

    async def _client(self) -> Any:
        client, settings = await self.access.connect()
        if not self.asynchronous:
            return client
        if self._async_client is None:
            self._async_client = self._async_redis.from_url(settings.redis_url, socket_timeout=2,
                                                            socket_connect_timeout=2)
        return self._async_client

    async def observe(self, pools: Sequence[Any]) -> Mapping[str, Any]:
        try:
            client = await self._client()
        except Exception as exc:
            log.warning("cannot connect to Redis for metrics: %s", exc)
            return {p.name: None for p in pools}
        if self.inner is None or self.inner.client is not client:
            self.inner = self._source_class(client, self.access.settings, executor=self.executor)
        result: Mapping[str, Any] = await self.inner.observe(pools)
        return result

    async def close(self) -> None:
        client, self._async_client = self._async_client, None
        if client is not None:
            with contextlib.suppress(Exception):  # closing a broken connection may fail; it is gone either way
                await client.aclose()


class StatusReporter:
    """on_decision for the operator: an Event per scaling, one status patch per queue when something changed.

    The round never waits for the API server: a decision that changes a pool's block (or scales it)
    schedules one write task for the queue, which runs after the round and patches the blocks of every
    pool that differs from what was last written, and the queue's totals, in one request. Awaiting the
    patch inside the round held the scheduler's slot for an API round trip: with 250 queues, rounds
    queued behind the reconciles' requests and the 1 s polls were missed (0 % on time). Demand moves
    every second under load; the status need not: a pool's block is rewritten at most every
    `min_interval` seconds unless it scaled. Nothing changed: no request at all.
    """

    def __init__(self, spec: Any, kube: Kube, *, min_interval: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        from bookgen_operator.controller import opmetrics
        from bookgen_operator.core.resources.labels import metrics_name

        self.spec, self.kube, self.min_interval, self.clock = spec, kube, min_interval, clock
        self.owner = {"apiVersion": "bookgen.io/v1alpha1", "kind": "BookGenQueue",
                      "metadata": {"name": spec.name, "namespace": spec.namespace, "uid": spec.uid}}
        self._gauges = opmetrics.pool_gauges(spec.namespace, metrics_name(spec))
        #: pool -> (block without its age, when written): what the API server has.
        self.written: dict[str, tuple[Mapping[str, Any], float]] = {}
        self.latest: dict[str, PoolStatus] = {}
        self._due: set[str] = set()  # pools whose block must be written
        self._task: asyncio.Task[None] | None = None
        #: Status patches sent (for tests and the offline bench).
        self.patches = 0

    @staticmethod
    def _comparable(block: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in block.items() if k != "observationAgeSeconds"}

    async def __call__(self, status: PoolStatus) -> None:
        from bookgen_operator.controller import events

        self.latest[status.pool] = status
        self._gauges(status.pool, status.desired, status.current)
        if status.scaled:
            events.normal(self.owner, "Scaled", status.reason)
        elif status.error:
            events.warning(self.owner, "ScalingFailed", status.reason)
        before = self.written.get(status.pool)
        if before and not status.scaled:
            if before[0] == self._comparable(status.to_status()):
                return  # nothing changed: no request
            if self.clock() - before[1] < self.min_interval:
                return  # changed, but written moments ago: a later round writes it
        self._due.add(status.pool)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._write(), name=f"status of {self.spec.name}")

    async def _write(self) -> None:
        await asyncio.sleep(0)  # the rest of the round reports first: one patch for all its pools
        while self._due:
            blocks = {pool: s.to_status() for pool, s in self.latest.items()}
            # Every pool that differs from what was written goes along (free in the same request).
            pools = {pool: block for pool, block in blocks.items() if pool in self._due
                     or self._comparable(block) != (self.written.get(pool) or ({}, 0.0))[0]}
            self._due.clear()
            patch: dict[str, Any] = {"pools": pools}
            known = [s for s in self.latest.values() if s.pending is not None]
            if known:
                patch["pending"] = sum(s.pending or 0 for s in known)
                patch["inFlight"] = sum(s.in_flight or 0 for s in known)
            try:
                self.patches += 1
                await self.kube.patch(BGQ, self.spec.namespace, self.spec.name, {"status": patch},
                                      subresource="status")
            except (KubeError, OSError) as exc:
                log.info("could not write autoscaling status of %s: %s", self.spec.name, exc)
                return  # the next round that still differs tries again
            except Exception:  # reporting is best effort (nobody awaits this task): log, scaling goes on
                log.exception("writing the autoscaling status of %s failed", self.spec.name)
                return
            now = self.clock()
            for pool, block in pools.items():
                self.written[pool] = (self._comparable(block), now)

    async def close(self) -> None:
        """Drop a write not yet done (the queue went away, or a new reporter took over)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def status_reporter(spec: Any, kube: Kube, *, min_interval: float = 5.0,
                    clock: Callable[[], float] = time.monotonic) -> StatusReporter:
    return StatusReporter(spec, kube, min_interval=min_interval, clock=clock)


def source_options(spec: Any) -> dict[str, Any]:
    """Where this BookGenQueue's metrics are, for make_source: its Prometheus series (scoped to its own
    namespace and metrics Service: two queues in a namespace share queue names) or its exporter."""
    from bookgen_operator.core.resources.labels import metrics_name
    from bookgen_operator.core.resources.monitoring import prometheus_scope

    return {
        "prometheus_url": spec.autoscaling.prometheus_url,
        "labels": prometheus_scope(spec),
        "endpoint_url": f"http://{metrics_name(spec)}.{spec.namespace}.svc:{spec.metrics.port}/metrics",
    }


async def run_queue_autoscaler(spec: Any, kube: Kube, stopped: Any) -> None:
    """Run the autoscaler of one BookGenQueue on its own loop (until `stopped` is set). The operator runs
    every queue on the shared scheduler instead (platforms/scheduled.py); this stays for one queue alone."""
    from bookgen_operator.sources.select import make_source

    access = RedisAccess(spec, kube)
    source = make_source(spec.autoscaling.source, **source_options(spec), redis=lambda: AccessRedisSource(access))
    platform = KubernetesPlatform(kube, spec.namespace, spec.name, access.registry)
    reporter = status_reporter(spec, kube)
    autoscaler = Autoscaler(spec.pools, source, platform, on_decision=reporter)
    stop = asyncio.Event()

    async def relay() -> None:  # bridge kopf's DaemonStopped to the loop's asyncio.Event
        await stopped.wait()
        stop.set()

    watcher = asyncio.create_task(relay())
    try:
        await autoscaler.run(stop)
    finally:
        watcher.cancel()
        await source.close()
        await reporter.close()
        access.drop()
