"""EndpointSource scrapes the real exporter (our collector on a real Redis); RedisSource reads the same.

Both must report exactly what measure() and the worker registry hold: pending over every priority
list, in flight from the unacked hash, busy slots of the pool. Unknown stays unknown (None).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
import redis
from bookgen_operator.sources.endpoint import EndpointSource, Exposition
from bookgen_operator.sources.redis_source import RedisSource
from bookgen_worker.app import bookgen_settings
from bookgen_worker.metrics.exporter import make_registry
from bookgen_worker.metrics.workers import WorkerInfo, publish
from bookgen_worker.queues import transport_priority
from celery import Celery
from kombu import Queue
from prometheus_client import start_http_server
from redis.backoff import NoBackoff
from redis.retry import Retry


@dataclass(frozen=True)
class Pool:
    name: str
    queues: tuple[str, ...]


CONTENT = Pool("content", ("content_generation", "high_priority"))
EXPORT = Pool("export", ("export",))


@contextmanager
def exporter(app: Celery) -> Iterator[str]:
    server, thread = start_http_server(0, addr="127.0.0.1", registry=make_registry(bookgen_settings(app)))
    try:
        yield f"http://127.0.0.1:{server.server_port}/metrics"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextmanager
def taken(app: Celery, queue: str, count: int) -> Iterator[None]:
    """Hold `count` messages unacknowledged, as a worker running them does (kombu's `unacked`)."""
    with app.connection_for_read() as conn:
        bound = Queue(queue, routing_key=queue).bind(conn.default_channel)
        for _ in range(count):
            assert bound.get(no_ack=False) is not None
        yield


def load(app: Celery, client: redis.Redis) -> None:
    for n in range(12):
        app.send_task("bookgen.probe.record", args=[n], queue="content_generation", routing_key="content_generation",
                      priority=transport_priority((0, 3, 6, 10)[n % 4]))
    for n in range(3):
        app.send_task("bookgen.probe.record", args=[n], queue="high_priority", routing_key="high_priority")
    settings = bookgen_settings(app)
    for host, busy in (("content@a", 2), ("content@b", 0)):
        publish(client, settings, WorkerInfo(host, "content", f"pod-{host[-1]}", 1, CONTENT.queues, 2, busy,
                                             time.time()))


async def test_endpoint_and_redis_sources_report_what_redis_holds(celery_app: Celery,
                                                                  redis_client: redis.Redis) -> None:
    load(celery_app, redis_client)
    with taken(celery_app, "high_priority", 2), exporter(celery_app) as url:
        endpoint = EndpointSource(url, timeout=2)
        scraped = await endpoint.observe([CONTENT, EXPORT])
        await endpoint.close()
        direct = await RedisSource(redis_client, bookgen_settings(celery_app)).observe([CONTENT, EXPORT])

    content = scraped["content"]
    assert content is not None
    assert (content.pending, content.in_flight, content.busy_slots) == (12 + 1, 2, 2)
    assert content.oldest_age is not None and content.oldest_age >= 0
    assert abs(content.observed_at - time.time()) < 30
    assert scraped["export"] is not None and (scraped["export"].pending, scraped["export"].in_flight) == (0, 0)
    assert scraped["export"].oldest_age is None

    redis_view = direct["content"]
    assert redis_view is not None
    assert (redis_view.pending, redis_view.in_flight, redis_view.busy_slots) == (13, 2, 2)
    assert redis_view.busy_pods == ("pod-a",)


async def test_a_queue_the_exporter_does_not_know_is_unknown_not_empty(celery_app: Celery) -> None:
    with exporter(celery_app) as url:
        source = EndpointSource(url, timeout=2)
        result = await source.observe([Pool("custom", ("not_measured_here",)), EXPORT])
        await source.close()
    assert result["custom"] is None
    assert result["export"] is not None


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_an_unreachable_endpoint_or_redis_is_unknown() -> None:
    source = EndpointSource(f"http://127.0.0.1:{_closed_port()}/metrics", timeout=1)
    assert await source.observe([CONTENT]) == {"content": None}
    await source.close()

    from bookgen_worker.config import settings_from_env

    settings = settings_from_env({"REDIS_URL": f"redis://127.0.0.1:{_closed_port()}/0"})
    dead = redis.Redis(port=_closed_port(), socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
    assert await RedisSource(dead, settings).observe([CONTENT]) == {"content": None}


@pytest.mark.parametrize("text", [
    "bookgen_redis_up 0\nbookgen_queue_pending{queue=\"export\"} 0\nbookgen_queue_in_flight{queue=\"export\"} 0\n",
    "bookgen_queue_pending{queue=\"export\"} NaN\nbookgen_queue_in_flight{queue=\"export\"} 0\n",
])
def test_an_exporter_that_cannot_measure_is_unknown(text: str) -> None:
    assert Exposition(text).pool(EXPORT, 0.0) is None
