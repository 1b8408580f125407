"""One Redis client per process for BookGen's own keys (jobs, dead letters, metrics).

Clients are cached per process id: a prefork child must not reuse its parent's sockets.
Keys honour the configured global key prefix, like kombu's own keys do.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import redis
from redis.typing import EncodableT, FieldT

from .config import Settings, redact
from .errors import RedisUnavailable

_clients: dict[tuple[int, str], redis.Redis] = {}


def get_redis(settings: Settings) -> redis.Redis:
    cache_key = (os.getpid(), settings.redis_url)
    client = _clients.get(cache_key)
    if client is None:
        client = redis.Redis.from_url(
            settings.redis_url, socket_connect_timeout=5, socket_timeout=30, health_check_interval=30
        )
        _clients[cache_key] = client
    return client


def text(reply: object) -> str:
    """A Redis reply as text. Our clients answer bytes; redis-py types replies as bytes, str and more."""
    return reply.decode() if isinstance(reply, bytes) else str(reply)


def hash_fields(values: Mapping[str, str]) -> dict[FieldT, EncodableT]:
    """A hash of text for HSET's mapping (redis-py types its keys as every encodable type, and a
    Mapping's key type must match exactly)."""
    return {key: value for key, value in values.items()}


def prefixed(settings: Settings, key: str) -> str:
    return f"{settings.global_keyprefix}{key}"


def check_reachable(settings: Settings) -> None:
    """Raise RedisUnavailable with a one-line message instead of a traceback."""
    try:
        get_redis(settings).ping()
    except redis.exceptions.AuthenticationError:
        raise RedisUnavailable(f"Redis at {redact(settings.redis_url)} refused the password") from None
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RedisUnavailable(f"cannot reach Redis at {redact(settings.redis_url)}: {reason}") from None


#: What Redis answers to a write it refuses at maxmemory (redis-py raises OutOfMemoryError for it; kombu
#: wraps it in its OperationalError when publishing, so the text is what survives every wrapper).
OOM_REPLY = "command not allowed when used memory > 'maxmemory'"


def is_redis_full(exc: BaseException | None) -> bool:
    """`exc`, or an exception it was raised from, is Redis refusing a write at maxmemory."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, redis.exceptions.OutOfMemoryError) or OOM_REPLY in str(exc):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False
