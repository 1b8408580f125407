"""One full measure() beside the naive one-LLEN-per-queue approach (KEDA's Redis scaler, celery-exporter).

    .venv/bin/python -m bench.measure_queues [--tasks 100000] [--in-flight 200] [--runs 50]

A private redis-server holds 6 queues x every priority level (priority steps 0..9: 60 lists) with
`--tasks` pending messages spread over them, plus `--in-flight` entries in kombu's `unacked` hash.
The messages are copies of a real message sent by Celery (so headers and size are realistic),
pushed in pipelined batches to fill the server quickly. Both approaches run over the same loopback
connection; the naive one sends one LLEN per queue, as those tools do. Printed: time per full
measurement (median and 95th percentile), Redis round trips, and what each approach counts.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from bookgen_worker.app import configure_app, create_app
from bookgen_worker.config import settings_from_env
from bookgen_worker.metrics import measure
from bookgen_worker.metrics.measure import naive_lengths
from bookgen_worker.queues import QUEUES, priority_list_keys

from tests.support.redis_server import start_redis


class CountingConnection(redis.Connection):
    round_trips = 0
    _last = "read"

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if CountingConnection._last == "read":
            CountingConnection.round_trips += 1
        CountingConnection._last = "send"
        super().send_packed_command(command, check_health)

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        CountingConnection._last = "read"
        return super().read_response(*args, **kwargs)


def fill(url: str, tasks: int, in_flight: int) -> Any:
    settings = settings_from_env({"REDIS_URL": url, "BOOKGEN_PRIORITY_STEPS": "0,1,2,3,4,5,6,7,8,9"})
    app = create_app(settings)
    configure_app(app, settings)
    client = redis.Redis.from_url(url)
    client.flushall()
    app.send_task("bookgen.generate_chapter", args=["Ada Lovelace", 1], queue="content_generation",
                  routing_key="content_generation")
    template = json.loads(client.rpop("content_generation"))
    lists = [(q, key) for q in QUEUES for key in priority_list_keys(q, settings.priority_steps,
                                                                      settings.priority_separator)]
    pipe = client.pipeline(transaction=False)
    for index in range(tasks):
        queue, key = lists[index % len(lists)]
        template["headers"]["bookgen_sent_at"] = time.time() - (tasks - index) * 0.001
        template["properties"]["delivery_info"] = {"exchange": queue, "routing_key": queue}
        pipe.lpush(key, json.dumps(template))
        if index % 5000 == 4999:
            pipe.execute()
    for index in range(in_flight):
        queue = QUEUES[index % len(QUEUES)]
        pipe.hset("unacked", f"tag-{index}", json.dumps([template, queue, queue]))
    pipe.execute()
    client.close()
    return settings


def timed(action: Callable[[], Any], runs: int) -> tuple[float, float, Any]:
    action()  # warm up the connection
    samples, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = action()
        samples.append(time.perf_counter() - started)
    samples.sort()
    return statistics.median(samples), samples[int(0.95 * (len(samples) - 1))], result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--in-flight", type=int, default=200)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = start_redis(Path(tmp))
        try:
            url = server.url()
            started = time.perf_counter()
            settings = fill(url, args.tasks, args.in_flight)
            print(f"filled {args.tasks} pending tasks over {len(QUEUES)} queues x {len(settings.priority_steps)} "
                  f"priority lists and {args.in_flight} in flight in {time.perf_counter() - started:.1f}s")
            pool = redis.ConnectionPool.from_url(url, connection_class=CountingConnection)
            client = redis.Redis(connection_pool=pool)

            full_median, full_p95, snapshot = timed(lambda: measure(client, settings), args.runs)
            CountingConnection.round_trips = 0
            measure(client, settings)
            full_trips = CountingConnection.round_trips

            naive_median, naive_p95, naive = timed(lambda: naive_lengths(client, settings), args.runs)
            CountingConnection.round_trips = 0
            naive_lengths(client, settings)
            naive_trips = CountingConnection.round_trips

            pending = sum(d.pending for d in snapshot.queues.values())
            in_flight = sum(d.in_flight for d in snapshot.queues.values())
            oldest = max((d.oldest_pending_age or 0) for d in snapshot.queues.values())
            print(f"{'approach':<34}{'median':>10}{'p95':>10}{'round trips':>13}{'pending':>10}{'in flight':>11}")
            print(f"{'measure() (all lists + unacked)':<34}{full_median * 1e3:>8.3f}ms{full_p95 * 1e3:>8.3f}ms"
                  f"{full_trips:>13}{pending:>10}{in_flight:>11}")
            print(f"{'naive: one LLEN per queue':<34}{naive_median * 1e3:>8.3f}ms{naive_p95 * 1e3:>8.3f}ms"
                  f"{naive_trips:>13}{sum(naive.values()):>10}{'(unseen)':>11}")
            print(f"naive count misses {pending + in_flight - sum(naive.values())} of {pending + in_flight} tasks "
                  f"({100 * (1 - sum(naive.values()) / (pending + in_flight)):.1f}%); oldest pending age {oldest:.1f}s")
            client.close()
        finally:
            server.stop()


if __name__ == "__main__":
    main()
