"""Shared fixtures: one real redis-server per test session, a clean database per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from celery import Celery

from tests.support.redis_server import RedisServer, start_redis


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_redis(tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    from bookgen_worker.metrics.batch import BATCHER

    BATCHER.discard()  # metric counts an earlier test left in this process's batch (signals.py batches)
    client = redis_server.client()
    client.flushall()
    client.close()
    return redis_server.url()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def celery_app(redis_url: str) -> Iterator[Celery]:
    """The real BookGen app, pointed at the test Redis, with the probe tasks registered."""
    from bookgen_worker.app import app, configure_app
    from bookgen_worker.config import settings_from_env

    import tests.support.probe_tasks  # noqa: F401  (registers the probe tasks in this process)
    from tests.support.workers import FAST_TEST_ENV

    configure_app(app, settings_from_env({**FAST_TEST_ENV, "REDIS_URL": redis_url}))
    yield app
