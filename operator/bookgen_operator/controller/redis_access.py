"""One BookGenQueue's Redis as the operator reaches it: the address and password (from the queue's Secret)
for the worker registry, and the Redis metric source built on the same connection."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from typing import TYPE_CHECKING

from bookgen_operator.controller.client import RESOURCES, Kube, decoded
from bookgen_operator.core.autoscaler.platform import BusyUnknown
from bookgen_operator.core.autoscaler.source import PoolMetrics, PoolQuery
from bookgen_operator.core.spec import QueueSpec

if TYPE_CHECKING:  # imported where first used: see AccessRedisSource
    import redis
    import redis.asyncio
    from bookgen_worker.config import Settings

    from bookgen_operator.sources.redis_source import RedisSource

log = logging.getLogger(__name__)

SECRETS = RESOURCES[("v1", "Secret")]


async def _redis_url(spec: QueueSpec, kube: Kube) -> str:
    from bookgen_worker.config import settings_from_env

    secret = await kube.get(SECRETS, spec.namespace, spec.redis_secret_name)
    password = decoded(secret, spec.redis.password_secret_key) if secret else None
    if password is None:
        raise BusyUnknown(f"Secret {spec.redis_secret_name} has no key {spec.redis.password_secret_key}")
    url = spec.redis.url if not spec.redis.managed else f"redis://{spec.name}-redis.{spec.namespace}.svc:6379/0"
    return settings_from_env({"REDIS_URL": url, "REDIS_PASSWORD": password}).redis_url


class RedisAccess:
    """A lazily connected Redis client for the worker registry (and the redis source). `executor`: where
    the blocking registry reads run (the operator's bounded Redis threads; None = the loop's default)."""

    def __init__(self, spec: QueueSpec, kube: Kube, executor: Executor | None = None) -> None:
        self.spec, self.kube, self.executor = spec, kube, executor
        self.client: redis.Redis | None = None
        self.settings: Settings | None = None

    async def connect(self) -> tuple[redis.Redis, Settings]:
        if self.client is None or self.settings is None:
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

        client, settings = await self.connect()
        try:
            workers = await asyncio.get_running_loop().run_in_executor(self.executor, read_workers, client, settings)
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

    def __init__(self, access: RedisAccess, executor: Executor | None = None, *, asynchronous: bool = False) -> None:
        # Imported here, when the queue's autoscaler is built, not in its first poll: the first import
        # (redis, bookgen_worker.metrics) takes seconds of CPU, and every lane waited for it.
        import redis.asyncio

        from bookgen_operator.sources.redis_source import RedisSource

        self.access, self.executor, self.asynchronous = access, executor, asynchronous
        self._source_class, self._async_redis = RedisSource, redis.asyncio.Redis
        self.inner: RedisSource | None = None
        self._async_client: redis.asyncio.Redis | None = None

    async def _client(self) -> tuple[redis.Redis | redis.asyncio.Redis, Settings]:
        client, settings = await self.access.connect()
        if not self.asynchronous:
            return client, settings
        if self._async_client is None:
            self._async_client = self._async_redis.from_url(settings.redis_url, socket_timeout=2,
                                                            socket_connect_timeout=2)
        return self._async_client, settings

    async def observe(self, pools: Sequence[PoolQuery]) -> Mapping[str, PoolMetrics | None]:
        try:
            client, settings = await self._client()
        except Exception as exc:
            log.warning("cannot connect to Redis for metrics: %s", exc)
            return {p.name: None for p in pools}
        if self.inner is None or self.inner.client is not client:
            self.inner = self._source_class(client, settings, executor=self.executor)
        return await self.inner.observe(pools)

    async def close(self) -> None:
        client, self._async_client = self._async_client, None
        if client is not None:
            with contextlib.suppress(Exception):  # closing a broken connection may fail; it is gone either way
                await client.aclose()
