"""Seconds from a burst of 500 queued tasks to the Deployment patch, at a 1 s poll interval.

    .venv/bin/python -m bench.autoscale_latency [--rounds 5] [--tasks 500] [--seed 1]

Real parts: a private redis-server, 500 real Celery messages published by bookgen_worker.app (no
worker consumes them), the real RedisSource (one pipelined measurement), decide() and the
Kubernetes platform patching `<cr>-worker-content` through the Kubernetes API emulator over HTTP.
Each round starts a fresh autoscaler on a pool at 2 replicas, waits a random fraction of a poll
interval (so the burst lands at a random phase of the loop), publishes the burst and times the
emulator's receipt of the patch that reaches the policy's full target (within its tolerance band).

The baseline is KEDA's default behaviour worked out from its and the HPA's documented defaults
(the same rules as bench/simulate.py), since no KEDA runs here.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bookgen_operator.controller.actuator import KubernetesPlatform
from bookgen_operator.controller.client import Connection, Kube
from bookgen_operator.core.autoscaler.loop import Autoscaler
from bookgen_operator.core.autoscaler.policy import Policy
from bookgen_operator.sources.redis_source import RedisSource
from bookgen_worker.app import app, bookgen_settings, configure_app
from bookgen_worker.config import settings_from_env

from tests.support.k8s_emulator import start_emulator, stop_emulator
from tests.support.redis_server import start_redis

NS, CR, POOL = "bench", "bq", "content"
DEPLOYMENT = f"{CR}-worker-{POOL}"
START = 2
CONCURRENCY = 2
POLICY = Policy(min_replicas=START, max_replicas=100, poll_interval=1.0)


@dataclass(frozen=True)
class Pool:
    name: str
    queues: tuple[str, ...]
    concurrency: int
    policy: Policy


def keda_expectation(start: int, target: int) -> tuple[float, float, int]:
    """(mean, worst) seconds to the full target under HPA defaults, and the number of patches.

    The HPA syncs every 15 s (a burst waits 0-15 s for the first sync; KEDA's metrics adapter
    answers it with a fresh LLEN) and may grow by max(+100 %, +4 pods) per 15 s period.
    """
    replicas, steps = start, 0
    while replicas < target:
        replicas = min(target, max(2 * replicas, replicas + 4))
        steps += 1
    return 7.5 + 15 * (steps - 1), 15.0 + 15 * (steps - 1), steps


def deployment() -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": "bookgen", "app.kubernetes.io/instance": CR,
              "app.kubernetes.io/component": "worker", "bookgen.io/pool": POOL}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": DEPLOYMENT, "namespace": NS, "labels": labels},
            "spec": {"replicas": START, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "worker", "image": "bookgen"}]}}}}


async def measure_rounds(redis_url: str, rounds: int, tasks: int, seed: int) -> list[tuple[float, float, int, int]]:
    configure_app(app, settings_from_env({"REDIS_URL": redis_url}))
    settings = bookgen_settings(app)
    client = __import__("redis").Redis.from_url(redis_url)
    rng = random.Random(seed)
    target = math.ceil(tasks / (POLICY.target_per_slot * CONCURRENCY))
    emulator, server = await start_emulator()
    kube = Kube(lambda: Connection(server=emulator.base_url))
    results = []
    try:
        await emulator.create_object("apps/v1/deployments", deployment())
        patches: list[tuple[float, Any]] = []
        emulator.write_hooks.append(
            lambda call, body: patches.append((time.perf_counter(), body)) if call.resource == "deployments" else None)
        for _ in range(rounds):
            client.flushdb()
            await emulator.patch_object("apps/v1/deployments", NS, DEPLOYMENT, {"spec": {"replicas": START}})
            patches.clear()
            stepped = asyncio.Event()
            rounds_done = [0]

            def on_decision(_status: Any, ev: asyncio.Event = stepped, count: list[int] = rounds_done) -> None:
                count[0] += 1
                ev.set()

            autoscaler = Autoscaler([Pool(POOL, ("content_generation",), CONCURRENCY, POLICY)],
                                    RedisSource(client, settings), KubernetesPlatform(kube, NS, CR, None),
                                    on_decision=on_decision)
            stop = asyncio.Event()
            loop = asyncio.create_task(autoscaler.run(stop))
            await asyncio.wait_for(stepped.wait(), 10)
            await asyncio.sleep(rng.random() * POLICY.poll_interval)  # a random phase of the poll loop
            started = time.perf_counter()
            await asyncio.to_thread(lambda: [app.send_task("bookgen.generate_chapter", args=["Ada", n])
                                             for n in range(tasks)])
            published = time.perf_counter()
            # "At target": within the policy's tolerance band of the full target (a poll that saw the burst
            # half-published may have asked for slightly fewer, and the band then holds that count).
            at_target = math.ceil(target * (1 - POLICY.tolerance))
            deadline = published + 30
            while not any(body["spec"]["replicas"] >= at_target for _, body in patches):
                if time.perf_counter() > deadline:
                    raise SystemExit(f"no patch to {at_target}+ replicas within 30 s (patches: {patches})")
                await asyncio.sleep(0.01)
            at = next(t for t, b in patches if b["spec"]["replicas"] >= at_target)
            seen = rounds_done[0]
            while rounds_done[0] < seen + 2:  # two more polls, to show any further patch
                await asyncio.sleep(0.01)
            results.append((at - published, published - started, len(patches), patches[-1][1]["spec"]["replicas"]))
            stop.set()
            await loop
    finally:
        await kube.close()
        await stop_emulator(emulator, server)
        client.close()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        server = start_redis(Path(tmp))
        try:
            results = asyncio.run(measure_rounds(server.url(), args.rounds, args.tasks, args.seed))
        finally:
            server.stop()
    target = math.ceil(args.tasks / (POLICY.target_per_slot * CONCURRENCY))
    latencies = [r[0] for r in results]
    mean, worst, steps = keda_expectation(START, target)
    print(f"burst of {args.tasks} tasks, pool of {START} workers x {CONCURRENCY} slots, target "
          f"{POLICY.target_per_slot:g} per slot -> {target} replicas; poll {POLICY.poll_interval:g} s; "
          f"{args.rounds} rounds")
    for n, (latency, publish, count, final) in enumerate(results, 1):
        print(f"  round {n}: publishing took {publish:.2f} s; at-target patch {latency:.2f} s after the last "
              f"message; {count} Deployment patch(es), ending at {final} replicas")
    print(f"{'':34}{'ours':>12}{'KEDA defaults':>16}")
    print(f"  {'to the target, median (s)':<32}{statistics.median(latencies):>12.2f}{mean:>16.1f}")
    print(f"  {'to the target, worst (s)':<32}{max(latencies):>12.2f}{worst:>16.1f}")
    from_first = [r[0] + r[1] for r in results]
    print(f"  {'... from the FIRST message (s)':<32}{statistics.median(from_first):>12.2f}{mean:>16.1f}")
    print(f"  {'Deployment patches':<32}{max(r[2] for r in results):>12}{steps:>16}")
    print("  (KEDA: first HPA sync 0-15 s after the burst, then max(+100 %, +4 pods) per 15 s; with minReplicaCount 0,"
          " add KEDA's 30 s activation poll; and only if the tasks sit in the base list — priority 8..10)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
