"""End-to-end no-op tasks through one worker: ours beside stock Celery, tasks/s and Redis commands/task.

    .venv/bin/python -m bench.throughput [--tasks 2000] [--rounds 3]

Same machine, same run, same private redis-server, same prefork worker with one process and the same
worker flags: only the Celery configuration differs. The clock starts when the queue starts to move
(the tasks are queued before the worker starts) and stops when the queue is empty and nothing is
unacknowledged. Commands per task are every command Redis counted in `INFO commandstats` over the
round (sending, consuming, acknowledging, results, metrics, worker start-up), minus the benchmark's
own polling, divided by the number of tasks. CPU per task is the CPU time the worker (main process
and pool children, recycled ones included) and redis-server used over the same window, divided by
the number of tasks: on a shared machine it moves far less than tasks/s, which also counts waiting.

What differs besides the configuration is part of our product's hot path and stays in: our rows
recycle their pool child every 1000 tasks (BOOKGEN_MAX_TASKS_PER_CHILD, the seeds' figure), so a
2000-task round includes one recycle, which stock Celery never does; our 10 priority lists make
each BRPOP name 10 keys (kombu's default, in the stock rows, 4); our signal handlers, task base
class and kombu/pool patches run as they do in production.

Rows: stock Celery (early acks, prefetch 4, no result backend); stock Celery with only our
acks_late, reject_on_worker_lost and prefetch 1, to show what those cost alone; ours as shipped, for a direct call
whose result is stored (someone may read it) and for the job machinery's messages (no result stored);
ours with kombu's old four priority lists instead of our ten, to show what the real 0..10 levels
cost; ours without the metrics signal handlers, to show what the rest costs; and ours with task events and
the STARTED state turned back on, which is how it was configured before.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import redis
from bookgen_worker.config import DEFAULT_PRIORITY_STEPS, DEFAULT_SEPARATOR
from bookgen_worker.queues import priority_list_keys

from tests.support.redis_server import start_redis
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[1]
#: Commands of the benchmark itself, never counted.
NOT_COUNTED = {"info", "config", "flushall"}


@dataclass(frozen=True)
class Flavour:
    name: str
    app: str
    queue: str
    send: str
    env: dict[str, str] = field(default_factory=dict)


STOCK = "bench.stock_tasks"  # the module the sender imports (BENCH_MODULE; default bench.noop_tasks)
FLAVOURS = (
    Flavour("stock Celery", "bench.stock_tasks:stock", "celery", "t.stock_noop.delay()", {"BENCH_MODULE": STOCK}),
    Flavour("stock, acks_late+pf 1", "bench.stock_tasks:stock", "celery", "t.stock_noop.delay()",
            {"BENCH_MODULE": STOCK, "BENCH_STOCK_RELIABLE": "1"}),
    Flavour("bookgen, result stored", "bookgen_worker.app", "default", "t.noop.apply_async(queue='default')"),
    Flavour("bookgen, job step", "bookgen_worker.app", "default",
            "t.noop.apply_async(queue='default', ignore_result=True)"),
    Flavour("bookgen, 4 priority lists", "bookgen_worker.app", "default",
            "t.noop.apply_async(queue='default', ignore_result=True)", {"BOOKGEN_PRIORITY_STEPS": "0,3,6,9"}),
    Flavour("bookgen, no metrics", "bookgen_worker.app", "default",
            "t.noop.apply_async(queue='default', ignore_result=True)", {"BENCH_METRICS_OFF": "1"}),
    Flavour("bookgen before", "bookgen_worker.app", "default", "t.noop.apply_async(queue='default')",
            {"BOOKGEN_TASK_EVENTS": "true", "BOOKGEN_TRACK_STARTED": "true"}),
)


class Poller:
    """Watches the queue and counts its own commands, so they can be taken out of the figures."""

    def __init__(self, client: redis.Redis, queue: str) -> None:
        self.client, self.keys, self.issued = client, priority_list_keys(queue, DEFAULT_PRIORITY_STEPS,
                                                                         DEFAULT_SEPARATOR), Counter[str]()

    def pending(self) -> int:
        self.issued["llen"] += len(self.keys)
        return sum(int(self.client.llen(key)) for key in self.keys)

    def drained(self) -> bool:
        if self.pending():
            return False
        self.issued["hlen"] += 1
        return int(self.client.hlen("unacked")) == 0


def commands(client: redis.Redis, ours: Counter[str]) -> int:
    stats = client.info("commandstats")
    total = 0
    for name, values in stats.items():
        command = name.removeprefix("cmdstat_").split("|")[0]
        if command not in NOT_COUNTED:
            total += int(values["calls"]) - ours.get(command, 0)
    return total


TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """CPU time of a process (all its threads), of its reaped children and of its live ones (/proc)."""

    def own(p: int) -> float:
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        return sum(int(v) for v in fields[11:15]) / TICKS  # utime, stime, cutime, cstime

    total = own(pid)
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # gone: counted once reaped
                total += own(int(child))
    return total


def run_once(url: str, redis_pid: int, flavour: Flavour, tasks: int, workdir: Path) -> tuple[float, float, float]:
    client = redis.Redis.from_url(url)
    client.flushall()
    client.config_resetstat()
    # This checkout's worker package first: the venv's editable install may point at another checkout
    # (a git worktree), and the worker would then run that one's code.
    path = os.pathsep.join(p for p in (str(ROOT / "worker"), str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "REDIS_URL": url, "PYTHONPATH": path, "BOOKGEN_EXTRA_TASK_MODULES": "bench.noop_tasks",
           "BOOKGEN_METRICS_PORT": "off", **flavour.env}
    module = flavour.env.get("BENCH_MODULE", "bench.noop_tasks")
    send = f"import {module} as t\n[{flavour.send} for _ in range({tasks})]"
    subprocess.run([sys.executable, "-c", send], env=env, cwd=ROOT, check=True)
    poller = Poller(client, flavour.queue)
    log = workdir / "worker.log"
    log.write_text("")
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", flavour.app, "worker", "-Q", flavour.queue, "-c", "1", "-P", "prefork",
         "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "WARNING", "-f", str(log)],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: poller.pending() < tasks, timeout=60, what=f"{flavour.name} worker to start")
        started, cpu_before = time.perf_counter(), cpu_seconds(worker.pid) + cpu_seconds(redis_pid)
        wait_for(poller.drained, timeout=600, interval=0.005, what=f"{flavour.name} queue to drain")
        rate = tasks / (time.perf_counter() - started)
        cpu_ms = (cpu_seconds(worker.pid) + cpu_seconds(redis_pid) - cpu_before) * 1000 / tasks
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    per_task = commands(client, poller.issued) / tasks
    client.close()
    return rate, per_task, cpu_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rates: dict[str, list[float]] = {f.name: [] for f in FLAVOURS}
    costs: dict[str, list[float]] = {f.name: [] for f in FLAVOURS}
    cpu: dict[str, list[float]] = {f.name: [] for f in FLAVOURS}
    with tempfile.TemporaryDirectory() as tmp:
        server = start_redis(Path(tmp))
        try:
            for _ in range(args.rounds):  # interleaved, so a busy moment of the machine hits every row
                for flavour in FLAVOURS:
                    rate, per_task, cpu_ms = run_once(server.url(), server.process.pid, flavour, args.tasks, Path(tmp))
                    rates[flavour.name].append(rate)
                    costs[flavour.name].append(per_task)
                    cpu[flavour.name].append(cpu_ms)
        finally:
            server.stop()
    stock = statistics.median(rates[FLAVOURS[0].name])
    print(f"no-op tasks through one worker (prefork, 1 process), {args.tasks} tasks x {args.rounds} rounds")
    print(f"{'configuration':<27}{'median tasks/s':>15}{'min':>7}{'max':>7}{'vs stock':>10}{'Redis cmds/task':>17}"
          f"{'CPU ms/task':>13}")
    for flavour in FLAVOURS:
        r = rates[flavour.name]
        print(f"{flavour.name:<27}{statistics.median(r):>15.0f}{min(r):>7.0f}{max(r):>7.0f}"
              f"{statistics.median(r) / stock:>9.2f}x{statistics.median(costs[flavour.name]):>17.1f}"
              f"{statistics.median(cpu[flavour.name]):>13.2f}")
    print("bookgen rows keep acks_late, reject_on_worker_lost, prefetch 1 and the priority lists; stock Celery:"
          " early acks, prefetch 4, no result backend.")


if __name__ == "__main__":
    main()
