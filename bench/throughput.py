"""End-to-end tasks per second through one worker: our configuration beside Celery's defaults.

    .venv/bin/python -m bench.throughput [--tasks 2000] [--rounds 3]

Same machine, same run, same private redis-server, same prefork worker with one process: the only
difference is the Celery configuration. The clock starts when the worker reports ready (the tasks
are already queued) and stops when the queue is empty and nothing is unacknowledged.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
from bookgen_worker.config import DEFAULT_PRIORITY_STEPS, DEFAULT_SEPARATOR
from bookgen_worker.queues import priority_list_keys

from tests.support.redis_server import start_redis
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[1]


def pending(client: redis.Redis, queue: str) -> int:
    """Every priority list of the queue (kombu's default steps and separator)."""
    return sum(int(client.llen(key)) for key in priority_list_keys(queue, DEFAULT_PRIORITY_STEPS, DEFAULT_SEPARATOR))


def run_once(url: str, flavour: str, tasks: int, workdir: Path) -> float:
    client = redis.Redis.from_url(url)
    client.flushall()
    env = {**os.environ, "REDIS_URL": url, "PYTHONPATH": str(ROOT), "BOOKGEN_EXTRA_TASK_MODULES": "bench.noop_tasks"}
    if flavour == "bookgen":
        app_name, queue = "bookgen_worker.app", "default"
        send = "from bookgen_worker.app import app; import bench.noop_tasks as t\n" \
               f"[t.noop.apply_async(queue='default') for _ in range({tasks})]"
    else:
        app_name, queue = "bench.noop_tasks:stock", "celery"
        send = f"import bench.noop_tasks as t\n[t.stock_noop.delay() for _ in range({tasks})]"
    subprocess.run([sys.executable, "-c", send], env=env, cwd=ROOT, check=True)
    log = workdir / f"{flavour}.log"
    log.write_text("")
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", app_name, "worker", "-Q", queue, "-c", "1", "-P", "prefork",
         "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "WARNING", "-f", str(log)],
        env={**env, "CELERY_LOG_LEVEL": "WARNING"}, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        # The worker logs readiness at INFO only; watch the queue start to move instead.
        wait_for(lambda: pending(client, queue) < tasks, timeout=60, what=f"{flavour} worker to start")
        started = time.perf_counter()
        wait_for(
            lambda: pending(client, queue) == 0 and int(client.hlen("unacked")) == 0,
            timeout=600, interval=0.005, what=f"{flavour} queue to drain",
        )
        return tasks / (time.perf_counter() - started)
    finally:
        worker.terminate()
        worker.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = start_redis(Path(tmp))
        try:
            results: dict[str, list[float]] = {"bookgen": [], "celery defaults": []}
            for _ in range(args.rounds):
                results["bookgen"].append(run_once(server.url(), "bookgen", args.tasks, Path(tmp)))
                results["celery defaults"].append(run_once(server.url(), "stock", args.tasks, Path(tmp)))
        finally:
            server.stop()
    print(f"no-op tasks through one worker (prefork, 1 process), {args.tasks} tasks x {args.rounds} rounds")
    print(f"{'configuration':<18}{'median tasks/s':>16}{'min':>10}{'max':>10}")
    for name, rates in results.items():
        print(f"{name:<18}{statistics.median(rates):>16.0f}{min(rates):>10.0f}{max(rates):>10.0f}")
    print("bookgen: acks_late, prefetch 1, priority lists, events on; celery defaults: prefetch 4, early ack")


if __name__ == "__main__":
    main()
