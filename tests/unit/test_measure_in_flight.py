"""In flight comes from what live workers report holding (O(workers)); kombu's `unacked` is only checked."""

from __future__ import annotations

import json
from types import SimpleNamespace

import redis
from bookgen_worker.config import Settings
from bookgen_worker.metrics import measure
from bookgen_worker.metrics.workers import Held, WorkerInfo, count_held, publish

from tests.support.registry import holder

NOW = 10_000.0


def _request(queue: str, exchange: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(delivery_info={"routing_key": queue, "exchange": exchange or queue})


def test_each_request_is_counted_once_as_running_reserved_or_scheduled() -> None:
    running = [_request("export"), _request("validation")]
    waiting = [_request("export"), _request("export")]
    eta = [_request("export"), _request("other-key", exchange="validation")]
    due = _request("export")  # its ETA passed: celery moved it to reserved; a stale scheduled entry must not count
    held = count_held(active=running, reserved=[*running, *waiting, due], scheduled=[*eta, due],
                      queues=("export", "validation"))
    assert held == {"export": Held(1, 3, 1), "validation": Held(1, 0, 1)}


def test_in_flight_is_running_plus_reserved_of_live_workers_and_eta_held_tasks_are_scheduled(
    redis_client: redis.Redis,
) -> None:
    settings = Settings()
    publish(redis_client, settings, holder({"export": Held(2, 3, 40), "validation": Held(1)}, hostname="a@h",
                                           updated_at=NOW - 1))
    publish(redis_client, settings, holder({"export": Held(1, 1, 0)}, hostname="b@h", updated_at=NOW - 2))
    # A worker that stopped reporting 30 s ago: it died, and what it held waits for the visibility timeout.
    publish(redis_client, settings, holder({"export": Held(5, 5, 5)}, hostname="dead@h", updated_at=NOW - 30))
    redis_client.hset("unacked", mapping={f"tag-{n}": "x" for n in range(48 + 15 + 2)})

    snapshot = measure(redis_client, settings, ("export", "validation"), now=NOW)

    export = snapshot.queues["export"]
    assert (export.running, export.reserved, export.scheduled, export.in_flight) == (3, 4, 40, 7)
    assert snapshot.queues["validation"].in_flight == 1
    assert snapshot.demand(["export"]) == 7  # the 40 countdown tasks are no demand
    assert snapshot.pools["holder"].workers == 2  # the dead one is not online
    assert (snapshot.unacked, snapshot.held, snapshot.unaccounted) == (65, 48, 17)  # 15 of the dead worker, 2 more
    assert json.loads(json.dumps(snapshot.to_dict()))["unaccounted"] == 17


def test_a_worker_too_old_to_say_what_it_holds_falls_back_to_parsing_unacked(redis_client: redis.Redis) -> None:
    settings = Settings()
    old = WorkerInfo("old@h", "export", "pod", 1, ("export",), 1, 1, NOW - 1)
    raw = json.loads(old.to_json())
    del raw["held"]  # the JSON of a worker from before this field
    redis_client.hset("bookgen:workers", "old@h", json.dumps(raw))
    assert WorkerInfo.from_json(json.dumps(raw)).held is None
    redis_client.hset("unacked", mapping={"t1": json.dumps([{}, "export", "export"]),
                                          "t2": json.dumps([{}, "export", "export"])})

    snapshot = measure(redis_client, settings, ("export",), now=NOW)

    assert snapshot.queues["export"].in_flight == 2  # never zero during a rolling upgrade


def test_worker_info_round_trips_with_what_it_holds() -> None:
    info = holder({"export": Held(1, 2, 3)}, updated_at=NOW)
    assert WorkerInfo.from_json(info.to_json()) == info
