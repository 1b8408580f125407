"""The operator's autoscaler scheduler offline: N BookGenQueues x 4 pools, 1 s polls, one real redis-server.

    .venv/bin/python -m bench.scheduler_rounds [--queues 250] [--seconds 20] [--baseline main] [--repeat 3]
                                               [--loop-load 0.5]

No control plane: every queue's autoscaler is started through the operator's own entry point
(controller/autoscaling.run_scheduled, what each BookGenQueue's kopf daemon calls: the Redis source on
the bounded executor, the Kubernetes platform behind the watch cache, the status reporter, on the
operator's scheduler), against one redis-server holding a backlog in every queue (so no queue backs
off) and a recording Kubernetes client (Secrets and Deployments answered from memory, every request
counted). Every pool has min = max = 1 replica, as in bench/operator_scale.py, so nothing scales
and a status write in the window means the reporter wrote something that did not change. The
event loop the daemons run on (kopf's, in the operator) is kept busy `--loop-load` of the time in
20 ms slices, standing in for the reconciles and kopf's own processing. Measured over the window
after a warm-up:

- polls on time / late (started > 0.25 s after their tick) / missed (ticks skipped), lag p50/p99;
- CPU of this process without the simulated load (share of one core: the event loops and the Redis
  threads), and of redis-server;
- Kubernetes requests per pool per second (status writes and GETs).

`--baseline REF` runs the same measurement, in the same way and interleaved with ours, on the
operator and worker code of git revision REF (exported to a temporary folder), e.g. the code before
a change. The target row is the 1 s poll itself: >= 99 % on time, at most one core, no requests in
steady state.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.scale_spec import POOLS, queue_spec

ROOT = Path(__file__).resolve().parents[1]



class RecordingKube:
    """The Kubernetes client the platform and the status reporter use, answering from memory."""

    def __init__(self, password: str) -> None:
        self.secret = {"data": {"password": base64.b64encode(password.encode()).decode()}}
        self.requests: dict[str, int] = {}

    def _count(self, verb: str, resource: Any, subresource: str | None = None) -> None:
        name = f"{verb} {getattr(resource, 'plural', resource)}{'/' + subresource if subresource else ''}"
        self.requests[name] = self.requests.get(name, 0) + 1

    async def get(self, resource: Any, namespace: str, name: str) -> Any:
        self._count("get", resource)
        return self.secret if getattr(resource, "plural", "") == "secrets" else {"spec": {"replicas": 1}}

    async def patch(self, resource: Any, namespace: str, name: str, body: Any, subresource: str | None = None,
                    **_: Any) -> Any:
        self._count("patch", resource, subresource)
        return {}

    async def list(self, resource: Any, *args: Any, **kwargs: Any) -> list[Any]:
        self._count("list", resource)
        return []


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def busy_loop(share: float, chunk: float, burnt: list[float]) -> None:
    """Keep this event loop busy `share` of the time in `chunk`-second slices, like kopf's reconciles."""
    while True:
        started, cpu = time.perf_counter(), time.thread_time()
        while time.perf_counter() - started < chunk:
            pass
        burnt[0] += time.thread_time() - cpu  # CPU spent spinning, to leave out of the scheduler's
        await asyncio.sleep(chunk * (1 - share) / share)


async def measure(queues: int, seconds: float, warmup: float, port: int, password: str, redis_pid: int,
                  loop_load: float) -> dict[str, Any]:
    kube = RecordingKube(password)
    spec = queue_spec(port)
    stopped = asyncio.Event()
    import bookgen_operator

    # Which layout the code under test has: ask its own folder, not an import that may fail over to
    # another tree (an editable install of this checkout answers for modules a baseline lacks).
    if (Path(bookgen_operator.__file__).parent / "controller").is_dir():
        # Since issue 22: the scheduler and the replica cache belong to the operator's context.
        from concurrent.futures import ThreadPoolExecutor

        from bookgen_operator.controller import autoscaling as scheduled
        from bookgen_operator.controller.actuator import ReplicaCache
        from bookgen_operator.controller.context import REDIS_THREADS
        from bookgen_operator.controller.scheduler import SchedulerThread
        from bookgen_operator.core.spec import parse_queue

        thread, replicas = SchedulerThread(), ReplicaCache()
        executor = ThreadPoolExecutor(REDIS_THREADS, thread_name_prefix="bookgen-redis")

        def run(queue: Any) -> Any:
            return scheduled.run_scheduled(queue, kube, stopped, thread, replicas, executor)
    else:  # a --baseline from before issue 22: one scheduler and cache per module
        from bookgen_operator.platforms import scheduled  # type: ignore[no-redef]
        from bookgen_operator.spec import parse_queue  # type: ignore[no-redef]

        thread, replicas = scheduled.SCHEDULER, scheduled.REPLICAS

        def run(queue: Any) -> Any:
            return scheduled.run_scheduled(queue, kube, stopped)

    daemons = []
    for i in range(queues):
        name = f"q{i:03d}"
        queue = parse_queue({"apiVersion": "bookgen.io/v1alpha1", "kind": "BookGenQueue",
                             "metadata": {"name": name, "namespace": "bench", "uid": f"uid-{i}", "generation": 1},
                             "spec": spec})
        for pool in queue.pools:  # what the operator's watch of its Deployments has seen
            replicas.seen("bench", f"{name}-worker-{pool.name}", 1)
        # What the operator's daemon of each BookGenQueue does, on the operator's scheduler.
        daemons.append(asyncio.create_task(run(queue)))
    burnt = [0.0]
    load = asyncio.create_task(busy_loop(loop_load, 0.02, burnt)) if loop_load > 0 else None
    await asyncio.sleep(warmup)  # first rounds: connections, the first status writes
    scheduler = getattr(thread, "scheduler", thread)  # on its thread, or this loop's

    def counts() -> dict[str, tuple[int, int, int, int]]:
        return {k: (s.on_time, s.late, s.missed, len(s.lags)) for k, s in list(scheduler.stats.items())}

    before, requests0 = counts(), dict(kube.requests)
    cpu0, burnt0, redis0, t0 = time.process_time(), burnt[0], cpu_seconds(redis_pid), time.monotonic()
    await asyncio.sleep(seconds)
    cpu, redis_cpu, wall = time.process_time() - cpu0, cpu_seconds(redis_pid) - redis0, time.monotonic() - t0
    load_cpu = burnt[0] - burnt0
    after = counts()
    if load is not None:
        load.cancel()
    stopped.set()
    await asyncio.gather(*daemons, return_exceptions=True)
    if hasattr(thread, "stop"):
        thread.stop()
    diff = [tuple(a - b for a, b in zip(after[k], before.get(k, (0, 0, 0, 0)), strict=True)) for k in after]
    lags = sorted(lag for k, s in scheduler.stats.items() for lag in s.lags[before.get(k, (0, 0, 0, 0))[3]:after[k][3]])
    requests = {k: v - requests0.get(k, 0) for k, v in kube.requests.items() if v - requests0.get(k, 0)}
    return {
        "on_time": sum(d[0] for d in diff), "late": sum(d[1] for d in diff), "missed": sum(d[2] for d in diff),
        "wall": wall, "cpu": (cpu - load_cpu) / wall, "load_cpu": load_cpu / wall, "redis_cpu": redis_cpu / wall,
        "lag_p50": lags[len(lags) // 2] if lags else 0.0, "lag_p99": lags[int(0.99 * (len(lags) - 1))] if lags else 0.0,
        "requests_per_pool_s": sum(requests.values()) / (queues * len(POOLS)) / wall, "requests": requests,
        "code": str(Path(scheduled.__file__).resolve().parents[2]),  # which tree was measured
    }


def child(args: argparse.Namespace) -> None:
    result = asyncio.run(measure(args.queues, args.seconds, args.warmup, args.port, args.password, args.redis_pid,
                                 args.loop_load))
    print(json.dumps(result))


def export(ref: str, into: Path) -> Path:
    """The operator and worker packages of git revision `ref`, as files in `into` (no worktree, no checkout)."""
    into.mkdir(parents=True, exist_ok=True)
    archive = into / "code.tar"
    subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(archive), ref, "operator", "worker"], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into


def run_child(code: Path, args: argparse.Namespace, port: int, password: str, redis_pid: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(code / "operator"), str(code / "worker"), str(ROOT)])}
    out = subprocess.run([sys.executable, "-m", "bench.scheduler_rounds", "--child", "--queues", str(args.queues),
                          "--seconds", str(args.seconds), "--warmup", str(args.warmup), "--port", str(port),
                          "--password", password, "--redis-pid", str(redis_pid), "--loop-load", str(args.loop_load)],
                         env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queues", type=int, default=250)
    parser.add_argument("--seconds", type=float, default=20.0, help="measured window")
    parser.add_argument("--warmup", type=float, default=4.0)
    parser.add_argument("--baseline", metavar="REF", help="also measure the code of this git revision, first")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each (min / median / max printed)")
    parser.add_argument("--loop-load", type=float, default=0.5,
                        help="share of the time the operator's (kopf's) event loop is busy elsewhere, in 20 ms slices")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--password", help=argparse.SUPPRESS)
    parser.add_argument("--redis-pid", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    import redis

    sys.path.insert(0, str(ROOT))
    from tests.support.redis_server import start_redis

    with tempfile.TemporaryDirectory() as tmp:
        server = start_redis(Path(tmp))
        try:
            client = redis.Redis.from_url(server.url())
            for queue in ("content_generation", "high_priority", "validation", "export", "monitoring"):
                client.lpush(queue, *[b"{}"] * 5)  # a backlog every pool sees: no queue is idle
            redis_pid = int(client.info("server")["process_id"])
            client.close()
            codes = {"ours": ROOT}
            if args.baseline:
                codes = {f"baseline ({args.baseline})": export(args.baseline, Path(tmp) / "baseline"), **codes}
            results: dict[str, list[dict[str, Any]]] = {name: [] for name in codes}
            for _ in range(args.repeat):  # interleaved, so both see the same background load
                for name, code in codes.items():
                    results[name].append(run_child(code, args, server.port, server.password, redis_pid))
        finally:
            server.stop()

    def spread(values: list[float], fmt: str) -> str:
        if len(values) == 1:
            return format(values[0], fmt)
        return "/".join(format(v, fmt) for v in (min(values), statistics.median(values), max(values)))

    print(f"{args.queues} BookGenQueues x {len(POOLS)} pools, 1 s polls, {args.seconds:.0f} s window x {args.repeat} "
          f"(min/median/max); kopf's loop busy {args.loop_load:.0%} elsewhere (CPU below excludes it); "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    w = 28
    print(f"{'':{w}}{'on time':>22}{'late/missed':>14}{'lag p50/p99 ms':>16}{'CPU':>20}{'redis CPU':>12}"
          f"{'req/pool/s':>12}")
    for name, runs in results.items():
        share = [r["on_time"] / max(1, r["on_time"] + r["late"] + r["missed"]) for r in runs]
        print(f"{name:{w}}{spread(share, '.1%'):>22}"
              f"{sum(r['late'] for r in runs) // len(runs):>8}/{sum(r['missed'] for r in runs) // len(runs):<5}"
              f"{statistics.median(r['lag_p50'] for r in runs) * 1e3:>8.1f}/"
              f"{statistics.median(r['lag_p99'] for r in runs) * 1e3:<7.1f}"
              f"{spread([r['cpu'] for r in runs], '.0%'):>20}{statistics.median(r['redis_cpu'] for r in runs):>12.0%}"
              f"{statistics.median(r['requests_per_pool_s'] for r in runs):>12.4f}")
    print(f"{'target (the 1 s poll)':{w}}{'>= 99.0%':>22}{'0/0':>14}{'':>16}{'<= 100%':>20}{'':>12}{'<= 0.05':>12}")
    for name, runs in results.items():
        print(f"{name}: code from {runs[-1]['code']}; requests in the last window: {runs[-1]['requests'] or 'none'}")


if __name__ == "__main__":
    main()
