"""measure() against a real redis-server, with messages placed by kombu itself (not by our key helper)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis
from bookgen_worker.app import bookgen_settings, configure_app
from bookgen_worker.config import settings_from_env
from bookgen_worker.metrics import QueueDepth, Snapshot, measure
from bookgen_worker.metrics.measure import SENT_AT_HEADER, in_flight_by_queue, naive_lengths, sent_at
from bookgen_worker.metrics.workers import Held
from bookgen_worker.queues import QUEUES, transport_priority
from celery import Celery
from kombu import Queue

from tests.support.registry import registered
from tests.support.workers import FAST_TEST_ENV

PRIORITIES = (0, 3, 5, 9, 10)


class CountingConnection(redis.Connection):
    """Counts round trips: a write that follows a read (or comes first) starts a new one."""

    round_trips = 0
    commands_sent = 0
    _last = "read"

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        cls = type(self)
        if cls._last == "read":
            cls.round_trips += 1
        cls._last = "send"
        cls.commands_sent += 1
        super().send_packed_command(command, check_health)

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        type(self)._last = "read"
        return super().read_response(*args, **kwargs)


@pytest.fixture
def counting_client(redis_url: str) -> Iterator[redis.Redis]:
    pool = redis.ConnectionPool.from_url(redis_url, connection_class=CountingConnection)
    client = redis.Redis(connection_pool=pool)
    client.ping()  # connect (AUTH, HELLO, ...) before counting
    CountingConnection.round_trips = 0
    CountingConnection.commands_sent = 0
    try:
        yield client
    finally:
        client.close()


def _app_with(celery_app: Celery, redis_url: str, **env: str) -> Celery:
    configure_app(celery_app, settings_from_env({**FAST_TEST_ENV, "REDIS_URL": redis_url, **env}))
    return celery_app


def _send(app: Celery, queue: str, priority: int) -> None:
    app.send_task("bookgen.probe.record", args=[f"{queue}-{priority}"], queue=queue, routing_key=queue,
                  priority=transport_priority(priority))


@contextmanager
def _taken(app: Celery, takes: dict[str, int]) -> Iterator[None]:
    """Hold messages unacknowledged, as a prefetching worker does (kombu's QoS -> `unacked`).

    Closing the channel restores them to their lists, so measure inside the block.
    """
    with app.connection_for_read() as conn:
        for queue, count in takes.items():
            bound = Queue(queue, routing_key=queue).bind(conn.default_channel)
            for _ in range(count):
                assert bound.get(no_ack=False) is not None
        yield


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"BOOKGEN_REDIS_KEYPREFIX": "team-a:", "BOOKGEN_PRIORITY_STEPS": "0,1,2,3,4,5,6,7,8,9",
         "BOOKGEN_PRIORITY_SEPARATOR": ":p:"},
    ],
    ids=["default-keys", "prefix-every-step-custom-separator"],
)
def test_pending_and_in_flight_count_every_priority_list_and_the_unacked_hash(
    celery_app: Celery, redis_url: str, redis_client: redis.Redis, env: dict[str, str]
) -> None:
    app = _app_with(celery_app, redis_url, **env)
    queues = ("content_generation", "validation", "export")
    for copies, queue in enumerate(queues, start=1):
        for priority in PRIORITIES:
            for _ in range(copies):
                _send(app, queue, priority)
    settings = bookgen_settings(app)
    with _taken(app, {"validation": 3, "export": 4}), \
            registered(redis_client, settings, {"validation": Held(1, 2), "export": Held(4)}):
        snapshot = measure(redis_client, settings)

    assert {q: (d.pending, d.in_flight) for q, d in snapshot.queues.items()} == {
        "high_priority": (0, 0),
        "content_generation": (5, 0),
        "validation": (10 - 3, 3),
        "export": (15 - 4, 4),
        "monitoring": (0, 0),
        "default": (0, 0),
    }
    assert snapshot.demand(["validation", "export"]) == 10 + 15
    assert (snapshot.unacked, snapshot.held, snapshot.unaccounted) == (7, 7, 0)  # registry and kombu agree
    # The naive single LLEN misses the higher-numbered priority lists (and never sees in-flight tasks).
    assert sum(naive_lengths(redis_client, bookgen_settings(app), queues).values()) < 5 + 7 + 11


def test_one_pipelined_round_trip_measures_all_queues_whatever_their_number(
    celery_app: Celery, redis_url: str, counting_client: redis.Redis
) -> None:
    app = _app_with(celery_app, redis_url)
    many = [f"queue-{n}" for n in range(40)]
    for queue in QUEUES:
        _send(app, queue, 9)

    measure(counting_client, bookgen_settings(app), QUEUES)  # the first poll may also load the script
    for queues in (QUEUES, many):
        CountingConnection.round_trips = 0
        CountingConnection.commands_sent = 0
        measure(counting_client, bookgen_settings(app), queues)
        assert CountingConnection.round_trips == 1
        assert CountingConnection.commands_sent == 1  # every command packed into one write


def _script_calls(client: redis.Redis) -> tuple[int, int]:
    stats = client.info("commandstats")
    return tuple(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("eval", "evalsha"))  # type: ignore[return-value]


def test_polls_send_the_scripts_digest_and_reload_it_after_a_flush(
    celery_app: Celery, redis_url: str, redis_client: redis.Redis
) -> None:
    app = _app_with(celery_app, redis_url)
    _send(app, "validation", 5)
    settings = bookgen_settings(app)
    redis_client.script_flush()  # as after a Redis restart: the server has no script
    first = measure(redis_client, settings)
    evals, shas = _script_calls(redis_client)
    for _ in range(5):
        assert measure(redis_client, settings).queues["validation"].pending == 1
    assert _script_calls(redis_client) == (evals, shas + 5)  # EVALSHA only: the 5 KB script is not resent
    assert first.queues["validation"].pending == 1  # the NOSCRIPT answer fell back to one EVAL


def test_oldest_pending_age_comes_from_the_oldest_message_of_any_priority_list(
    celery_app: Celery, redis_url: str, redis_client: redis.Redis
) -> None:
    app = _app_with(celery_app, redis_url)
    _send(app, "export", 0)  # oldest, lowest priority
    _send(app, "export", 10)
    _send(app, "export", 5)
    times = [sent_at(raw) for key in redis_client.keys("export*") for raw in redis_client.lrange(key, 0, -1)]
    assert all(t is not None for t in times)
    oldest = min(t for t in times if t is not None)

    snapshot = measure(redis_client, bookgen_settings(app), now=oldest + 42.5)

    assert snapshot.queues["export"].oldest_pending_age == pytest.approx(42.5)
    assert snapshot.queues["validation"].oldest_pending_age is None
    assert snapshot.measured_at == oldest + 42.5


def test_dead_letters_are_counted(celery_app: Celery, redis_url: str, redis_client: redis.Redis) -> None:
    settings = bookgen_settings(_app_with(celery_app, redis_url, BOOKGEN_REDIS_KEYPREFIX="x:"))
    redis_client.hset("x:failed_tasks", mapping={"a": "{}", "b": "{}"})
    redis_client.hset("failed_tasks", "unprefixed", "{}")  # another tenant's: not ours
    assert measure(redis_client, settings).dead_letters == 2


def test_unacked_entries_are_attributed_by_routing_key_then_exchange_and_junk_is_ignored() -> None:
    values = [
        json.dumps([{}, "export", "export"]),
        json.dumps([{}, "validation", "something-else"]),
        json.dumps([{}, "", "unknown"]),
        b"not json",
        json.dumps({"not": "a triple"}),
    ]
    assert in_flight_by_queue(values, QUEUES) == {"export": 1, "validation": 1}


def test_a_message_without_a_publish_time_has_no_age() -> None:
    assert sent_at(json.dumps({"headers": {}})) is None
    assert sent_at(json.dumps({"headers": {SENT_AT_HEADER: 12.5}})) == 12.5
    assert sent_at(b"\xff") is None


def test_snapshot_round_trips_through_json() -> None:
    snapshot = Snapshot({"export": QueueDepth("export", 3, 1, 2.5)}, dead_letters=4, measured_at=10.0)
    assert Snapshot.from_dict(json.loads(json.dumps(snapshot.to_dict()))) == snapshot
