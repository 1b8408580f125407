"""One Redis client per process for BookGen's own keys (jobs, dead letters, metrics).

Clients are cached per process id: a prefork child must not reuse its parent's sockets.
Keys honour the configured global key prefix, like kombu's own keys do.
"""

from __future__ import annotations

import os

import redis

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
