"""End-to-end no-op tasks through one worker: ours beside stock Celery, tasks/s and Redis commands/task.

    .venv/bin/python -m bench.throughput [--tasks 2000] [--rounds 3] [--only 4,6]

Same machine, same run, same private redis-server, same prefork worker with one process and the same
worker flags: only the Celery configuration differs. The clock starts when the queue starts to move
(the tasks are queued before the worker starts) and stops when the queue is empty and nothing is
unacknowledged. Commands per task are every command Redis counted in `INFO commandstats` over the
round (sending, consuming, acknowledging, results, metrics, worker start-up), minus the benchmark's
own polling, divided by the number of tasks. CPU per task is the CPU time the worker (main process
and pool children, recycled ones included) and redis-server used over the same window, divided by
the number of tasks: on a shared machine it moves far less than tasks/s, which also counts waiting.
It is printed per process kind (main, pool children, redis-server). Rounds interleave the rows, and
each row's ratio to stock Celery is taken per round (the two ran within seconds of each other) and
then its median: on 2 shared cores a round's rates swing by 2x, the same for both sides of a pair.
The benchmark's own queue polling is one pipelined round trip every 5 ms, the same for every row; the
worker runs this checkout's code (its `worker/` first on PYTHONPATH), not the venv's editable install.

What differs besides the configuration is part of our product's hot path and stays in: our rows
recycle their pool child every 1000 tasks (BOOKGEN_MAX_TASKS_PER_CHILD, BookGen's original figure), so a
2000-task round includes one recycle, which stock Celery never does; our 10 priority lists make
each BRPOP name 10 keys (kombu's default, in the stock rows, 4); our signal handlers, task base
class and kombu/pool patches (among them one redis client per kombu channel pool instead of one per
acknowledgement) run as they do in production.

Rows: stock Celery (early acks, prefetch 4, no result backend); stock Celery with only our
acks_late, reject_on_worker_lost and prefetch 1, to show what those cost alone; stock Celery with a
Redis result backend (the last two rows, at its defaults and with our acks_late + prefetch 1), the
like-for-like baselines of our direct call whose result is stored; ours as shipped, for a direct call
whose result is stored (someone may read it) and for the job machinery's messages (no result stored);
ours with kombu's old four priority lists instead of our ten, to show what the real 0..10 levels
cost; ours without the metrics signal handlers, to show what the rest costs; and ours with task events and
the STARTED state turned back on, which is how it was configured before.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
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
    # Last, so the row numbers of --only stay as they were: the like-for-like baseline of row 3.
    Flavour("stock, result stored", "bench.stock_tasks:stock", "celery", "t.stock_noop.delay()",
            {"BENCH_MODULE": STOCK, "BENCH_STOCK_RESULTS": "1"}),
    Flavour("stock, pf 1, result stored", "bench.stock_tasks:stock", "celery", "t.stock_noop.delay()",
            {"BENCH_MODULE": STOCK, "BENCH_STOCK_RESULTS": "1", "BENCH_STOCK_RELIABLE": "1"}),
)


class Poller:
    """Watches the queue and counts its own commands, so they can be taken out of the figures.

    One pipelined round trip per poll (every LLEN and the HLEN): the poller shares the 2 cores with
    the worker and redis-server it measures, so its own cost must stay small and equal for every row."""

    def __init__(self, client: redis.Redis, queue: str) -> None:
        self.client, self.keys, self.issued = client, priority_list_keys(queue, DEFAULT_PRIORITY_STEPS,
                                                                         DEFAULT_SEPARATOR), Counter[str]()

    def state(self) -> tuple[int, int]:
        """(messages queued, messages unacknowledged)."""
        with self.client.pipeline(transaction=False) as pipe:
            for key in self.keys:
                pipe.llen(key)
            pipe.hlen("unacked")
            *lengths, unacked = pipe.execute()
        self.issued["llen"] += len(self.keys)
        self.issued["hlen"] += 1
        return sum(int(n) for n in lengths), int(unacked)

    def pending(self) -> int:
        return self.state()[0]

    def drained(self) -> bool:
        return self.state() == (0, 0)


def commands(client: redis.Redis, ours: Counter[str]) -> int:
    stats = client.info("commandstats")
    total = 0
    for name, values in stats.items():
        command = name.removeprefix("cmdstat_").split("|")[0]
        if command not in NOT_COUNTED:
            total += int(values["calls"]) - ours.get(command, 0)
    return total


TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU time of a process (all its threads) and of its children, reaped (cutime, cstime) and live."""

    def ticks(p: int) -> list[int]:
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        return [int(v) for v in fields[11:15]]  # utime, stime, cutime, cstime

    utime, stime, cutime, cstime = ticks(pid)
    children = (cutime + cstime) / TICKS
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # gone: counted once reaped
                children += sum(ticks(int(child))) / TICKS
    return (utime + stime) / TICKS, children


@dataclass(frozen=True)
class Result:
    rate: float  # tasks/s
    commands: float  # Redis commands per task
    main_ms: float  # CPU ms per task: the worker's main process, its pool children, redis-server
    child_ms: float
    redis_ms: float

    @property
    def cpu_ms(self) -> float:
        return self.main_ms + self.child_ms + self.redis_ms


def stop(worker: subprocess.Popen[bytes], name: str, timeout: float = 60) -> None:
    """Warm shutdown, as in production; a worker still there after `timeout` is reported and killed
    with its pool (its own session), so one slow exit neither loses the run nor leaves a process."""
    worker.terminate()
    started = time.perf_counter()
    try:
        worker.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"warning: {name}: the worker had not exited {timeout:.0f} s after SIGTERM; killed", file=sys.stderr)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
        return
    if time.perf_counter() - started > 10:
        print(f"warning: {name}: the worker took {time.perf_counter() - started:.0f} s to exit", file=sys.stderr)


def run_once(url: str, redis_pid: int, flavour: Flavour, tasks: int, workdir: Path) -> Result:
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
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        wait_for(lambda: poller.pending() < tasks, timeout=60, what=f"{flavour.name} worker to start")
        started, before = time.perf_counter(), (*cpu_seconds(worker.pid), sum(cpu_seconds(redis_pid)))
        wait_for(poller.drained, timeout=600, interval=0.005, what=f"{flavour.name} queue to drain")
        rate = tasks / (time.perf_counter() - started)
        after = (*cpu_seconds(worker.pid), sum(cpu_seconds(redis_pid)))
        main_ms, child_ms, redis_ms = ((a - b) * 1000 / tasks for a, b in zip(after, before, strict=True))
    finally:
        stop(worker, flavour.name)
    per_task = commands(client, poller.issued) / tasks
    client.close()
    return Result(rate, per_task, main_ms, child_ms, redis_ms)


def report(results: dict[str, list[Result]], tasks: int, loads: list[tuple[float, float]]) -> None:
    stock, reliable = (results[FLAVOURS[i].name] for i in (0, 1))
    rounds = len(stock)
    print(f"no-op tasks through one worker (prefork, 1 process), {tasks} tasks x {rounds} rounds; load average"
          f" (1 min) at the start / end of each round: " + ", ".join(f"{a:.1f}/{b:.1f}" for a, b in loads))
    width = max(10, 5 * rounds + 1)
    print(f"{'configuration':<27}{'tasks/s':>8}{'min':>6}{'max':>6}{'vs stock':>9}{'per round':>{width}}{'vs pf 1':>8}"
          f"{'cmds':>6}{'CPU ms':>7}{'main':>6}{'child':>6}{'redis':>6}")
    for name, rows in results.items():
        rates = [r.rate for r in rows]
        # a row's ratio in each round to the stock row run just before it: both met the same moment
        pairs = [r.rate / s.rate for r, s in zip(rows, stock, strict=True)]
        same = statistics.median(r.rate / s.rate for r, s in zip(rows, reliable, strict=True))
        per_round = " ".join(f"{x:.2f}" for x in pairs)
        print(f"{name:<27}{statistics.median(rates):>8.0f}{min(rates):>6.0f}{max(rates):>6.0f}"
              f"{statistics.median(pairs):>8.2f}x{per_round:>{width}}{same:>7.2f}x"
              f"{statistics.median(r.commands for r in rows):>6.1f}{statistics.median(r.cpu_ms for r in rows):>7.2f}"
              f"{statistics.median(r.main_ms for r in rows):>6.2f}{statistics.median(r.child_ms for r in rows):>6.2f}"
              f"{statistics.median(r.redis_ms for r in rows):>6.2f}")
    print("vs stock: median over rounds of the row's tasks/s over stock Celery's in the same round (per round:"
          " each of them); vs pf 1: the same against stock with acks_late + prefetch 1. CPU ms per task:"
          " worker main process + pool children + redis-server (medians). bookgen rows keep acks_late,"
          " reject_on_worker_lost, prefetch 1 and the priority lists; stock Celery: early acks, prefetch 4,"
          " no result backend.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="", help="comma-separated row numbers (1 = stock) to run; 1 and 2 always run")
    args = parser.parse_args()
    chosen = {int(n) for n in args.only.split(",") if n.strip()}
    flavours = [f for i, f in enumerate(FLAVOURS, 1) if not chosen or i in chosen | {1, 2}]
    results: dict[str, list[Result]] = {f.name: [] for f in flavours}
    loads: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        server = start_redis(Path(tmp))
        try:
            for _ in range(args.rounds):  # interleaved, so a busy moment of the machine hits every row
                start = os.getloadavg()[0]
                for flavour in flavours:
                    results[flavour.name].append(run_once(server.url(), server.process.pid, flavour, args.tasks,
                                                          Path(tmp)))
                loads.append((start, os.getloadavg()[0]))
        finally:
            server.stop()
    report(results, args.tasks, loads)


if __name__ == "__main__":
    main()
