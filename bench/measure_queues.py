"""One full measure() beside the ones it replaced (every load line or unacked entry parsed) and the naive count.

    .venv/bin/python -m bench.measure_queues [--tasks 100000] [--in-flight 50000] [--workers 500]
                                             [--scheduled-share 0.1] [--runs 50]

A private redis-server holds 6 queues x every priority level (priority steps 0..9: 60 lists) with
`--tasks` pending messages spread over them, plus `--in-flight` entries in kombu's `unacked` hash,
held by `--workers` registry entries (what each worker's registry thread publishes: running,
reserved and ETA-held per queue); `--scheduled-share` of them are held for a countdown. The
messages are copies of a real message sent by Celery (so headers and size are realistic), pushed in
pipelined batches to fill the server quickly. All approaches run over the same loopback connection:
measure() (lists + the registry's sums + HLEN unacked, one round trip), the same script parsing every
worker's load line instead of reading the sums (the previous measure(), O(workers)), the one before
(lists + HVALS of `unacked`, JSON-parsing every entry, O(in flight)), and the naive one LLEN per
queue of KEDA's Redis scaler and celery-exporter. Printed: time per full measurement (median and 95th
percentile), Redis round trips, what each approach counts, the client's CPU and Redis's time per
script, and whether measure()'s counts equal the truth that was written.
"""

from __future__ import annotations

import argparse
import json
import os
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
from bookgen_worker.metrics.measure import UNACKED_KEY, in_flight_by_queue, naive_lengths
from bookgen_worker.metrics.workers import Held, WorkerInfo, publish
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


def fill(url: str, tasks: int, in_flight: int, workers: int, scheduled_share: float) -> tuple[Any, dict[str, Held]]:
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
    # Worker w consumes queue w % 6; entry i is held by worker i % workers: running, reserved or scheduled.
    held: dict[int, list[int]] = {w: [0, 0, 0] for w in range(workers)}
    scheduled_every = round(1 / scheduled_share) if scheduled_share > 0 else 0
    for index in range(in_flight):
        worker = index % workers
        queue = QUEUES[worker % len(QUEUES)]
        pipe.hset("unacked", f"tag-{index}", json.dumps([template, queue, queue]))
        column = 2 if scheduled_every and index % scheduled_every == 0 else 0 if held[worker][0] < 4 else 1
        held[worker][column] += 1
        if index % 5000 == 4999:
            pipe.execute()
    pipe.execute()
    truth: dict[str, Held] = {}
    for worker, (running, reserved, scheduled) in held.items():
        queue = QUEUES[worker % len(QUEUES)]
        publish(client, settings, WorkerInfo(f"w{worker}@bench", queue, f"pod-{worker}", worker, (queue,), 4,
                                             running, time.time() + 3600,  # stays live for the whole run
                                             {queue: Held(running, reserved, scheduled)}))
        before = truth.get(queue, Held())
        truth[queue] = Held(before.running + running, before.reserved + reserved, before.scheduled + scheduled)
    client.close()
    return settings, truth


def measure_before(client: redis.Redis, settings: Any) -> dict[str, int]:
    """The previous measure()'s in-flight part: HVALS of `unacked`, every entry JSON-parsed."""
    return in_flight_by_queue(client.hvals(settings.global_keyprefix + UNACKED_KEY), QUEUES)


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
    parser.add_argument("--in-flight", type=int, default=50_000)
    parser.add_argument("--workers", type=int, default=500)
    parser.add_argument("--scheduled-share", type=float, default=0.1,
                        help="share of the in-flight entries held for an ETA/countdown")
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = start_redis(Path(tmp))
        try:
            url = server.url()
            started = time.perf_counter()
            settings, truth = fill(url, args.tasks, args.in_flight, args.workers, args.scheduled_share)
            print(f"filled {args.tasks} pending tasks over {len(QUEUES)} queues x {len(settings.priority_steps)} "
                  f"priority lists and {args.in_flight} held by {args.workers} workers "
                  f"({sum(h.scheduled for h in truth.values())} of them for a countdown) "
                  f"in {time.perf_counter() - started:.1f}s")
            pool = redis.ConnectionPool.from_url(url, connection_class=CountingConnection)
            client = redis.Redis(connection_pool=pool)

            cpu_started = time.process_time()
            full_median, full_p95, snapshot = timed(lambda: measure(client, settings), args.runs)
            client_cpu = (time.process_time() - cpu_started) / (args.runs + 1)
            CountingConnection.round_trips = 0
            measure(client, settings)
            full_trips = CountingConnection.round_trips

            lines_median, lines_p95, by_lines = timed(lambda: measure(client, settings, use_sums=False), args.runs)
            lines_cpu = time.process_time()
            for _ in range(args.runs):
                measure(client, settings, use_sums=False)
            lines_cpu = (time.process_time() - lines_cpu) / args.runs

            before_median, before_p95, before = timed(lambda: measure_before(client, settings), max(5, args.runs // 5))
            CountingConnection.round_trips = 0
            measure_before(client, settings)
            before_trips = CountingConnection.round_trips + full_trips  # it also read the lists

            naive_median, naive_p95, naive = timed(lambda: naive_lengths(client, settings), args.runs)
            CountingConnection.round_trips = 0
            naive_lengths(client, settings)
            naive_trips = CountingConnection.round_trips

            server_us = {}
            for name, use_sums in (("sums", True), ("lines", False)):
                client.config_resetstat()
                for _ in range(args.runs):
                    measure(client, settings, use_sums=use_sums)
                # measure() sends EVALSHA (EVAL only once, after a NOSCRIPT): the script's server time is both's
                stats = client.info("commandstats")
                scripts = [stats[k] for k in ("cmdstat_eval", "cmdstat_evalsha") if k in stats]
                calls = max(1, sum(int(s["calls"]) for s in scripts))
                server_us[name] = sum(float(s["usec"]) for s in scripts) / calls

            pending = sum(d.pending for d in snapshot.queues.values())
            in_flight = sum(d.in_flight for d in snapshot.queues.values())
            scheduled = sum(d.scheduled for d in snapshot.queues.values())
            oldest = max((d.oldest_pending_age or 0) for d in snapshot.queues.values())
            w = 40
            print(f"{'approach':<{w}}{'median':>10}{'p95':>10}{'round trips':>13}{'pending':>10}{'in flight':>11}"
                  f"{'scheduled':>11}")
            print(f"{'measure() (all lists + registry sums)':<{w}}{full_median * 1e3:>8.3f}ms{full_p95 * 1e3:>8.3f}ms"
                  f"{full_trips:>13}{pending:>10}{in_flight:>11}{scheduled:>11}")
            print(f"{'previous: parse every load line':<{w}}{lines_median * 1e3:>8.3f}ms{lines_p95 * 1e3:>8.3f}ms"
                  f"{full_trips:>13}{sum(d.pending for d in by_lines.queues.values()):>10}"
                  f"{sum(d.in_flight for d in by_lines.queues.values()):>11}"
                  f"{sum(d.scheduled for d in by_lines.queues.values()):>11}")
            print(f"{'before: lists + parse every unacked':<{w}}{(before_median + full_median) * 1e3:>8.3f}ms"
                  f"{(before_p95 + full_p95) * 1e3:>8.3f}ms{before_trips:>13}{pending:>10}"
                  f"{sum(before.values()):>11}{'(demand)':>11}")
            print(f"{'naive: one LLEN per queue':<{w}}{naive_median * 1e3:>8.3f}ms{naive_p95 * 1e3:>8.3f}ms"
                  f"{naive_trips:>13}{sum(naive.values()):>10}{'(unseen)':>11}{'':>11}")
            print(f"client CPU per call: measure() {client_cpu * 1e3:.3f}ms, previous {lines_cpu * 1e3:.3f}ms; "
                  f"the rest is Redis running the script and waiting for a CPU (load average "
                  f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
            print(f"Redis time per script: measure() {server_us['sums']:.0f}us, previous {server_us['lines']:.0f}us "
                  f"(INFO commandstats)")
            counted = {q: (d.running, d.reserved, d.scheduled) for q, d in snapshot.queues.items()}
            exact = counted == {q: tuple(truth.get(q, Held())) for q in QUEUES}
            same = {q: (d.pending, d.running, d.reserved, d.scheduled) for q, d in by_lines.queues.items()} == {
                q: (d.pending, d.running, d.reserved, d.scheduled) for q, d in snapshot.queues.items()}
            exact = exact and same and by_lines.pools == snapshot.pools  # both paths: the same numbers and pods
            print(f"measure() counts (and the previous path's) {'EQUAL' if exact else 'DIFFER FROM'} the truth "
                  f"per queue "
                  f"(in flight = running + reserved {sum(h.in_flight for h in truth.values())}, scheduled "
                  f"{sum(h.scheduled for h in truth.values())}); HLEN unacked {snapshot.unacked}, unaccounted "
                  f"{snapshot.unaccounted}")
            print(f"naive count misses {pending + in_flight - sum(naive.values())} of {pending + in_flight} tasks "
                  f"({100 * (1 - sum(naive.values()) / (pending + in_flight)):.1f}%); oldest pending age {oldest:.1f}s")
            client.close()
        finally:
            server.stop()


if __name__ == "__main__":
    main()
