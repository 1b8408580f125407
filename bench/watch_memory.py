"""Resident memory of the operator process with many unrelated Deployments in the cluster.

Ours: kopf's Deployment/StatefulSet watches carry our label selector (settings.watching.label_selectors),
so the API server sends only our children. Baseline: the same operator with the selector left to the
handler's `labels=` filter, which kopf applies on the client after listing and caching everything
(what the operator did before issue 13). Against the API emulator (the objects are what matters);
prints the resident set size (VmRSS) after the operator has listed everything and reconciled a queue.

    .venv/bin/python -m bench.watch_memory [--unrelated 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.k8s_emulator import default_emulator, start_emulator, stop_emulator  # noqa: E402
from tests.support.process_stats import rss_mib  # noqa: E402
from tests.support.redis_server import free_port  # noqa: E402

BASELINE = ("import bookgen_operator.controller.handlers as h; h.SERVER_SELECTED = h.CACHED_RESOURCES; "
            "from bookgen_operator.controller.main import main; raise SystemExit(main())")




def unrelated(i: int) -> dict:
    """A Deployment the size of a typical real one (~3 KB of JSON)."""
    env = [{"name": f"SETTING_{k}", "value": "x" * 40} for k in range(20)]
    return {"metadata": {"name": f"app-{i}", "namespace": "elsewhere", "labels": {"app": f"app-{i}", "team": "t"}},
            "spec": {"selector": {"matchLabels": {"app": f"app-{i}"}},
                     "template": {"metadata": {"labels": {"app": f"app-{i}"}},
                                  "spec": {"containers": [{"name": "app", "image": "registry.example/app:1.0",
                                                           "env": env}]}}}}


async def measure(count: int, baseline: bool) -> float:
    emulator = default_emulator()
    emulator.declare("bookgen.io/v1alpha1/bookgenqueues", kind="BookGenQueue", subresources=["status"])
    emulator, server = await start_emulator(emulator)
    try:
        for i in range(count):
            await emulator.create_object("apps/v1/deployments", unrelated(i))
        await emulator.create_object("bookgen.io/v1alpha1/bookgenqueues", {
            "apiVersion": "bookgen.io/v1alpha1", "kind": "BookGenQueue",
            "metadata": {"name": "demo", "namespace": "books"}, "spec": {}})
        args = ["-c", BASELINE] if baseline else ["-m", "bookgen_operator"]
        process = await asyncio.create_subprocess_exec(
            sys.executable, *args, "--metrics-port", "0", "--liveness", f"http://127.0.0.1:{free_port()}/healthz",
            env={**os.environ, "BOOKGEN_KUBE_SERVER": emulator.base_url, "BOOKGEN_AUTOSCALER": "off",
                 "PYTHONPATH": str(ROOT)},
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 120
            while emulator.get_object("apps/v1/deployments", "books", "demo-worker-content") is None:
                assert time.monotonic() < deadline, "the operator did not reconcile the queue"
                await asyncio.sleep(0.2)
            calls = len(emulator.calls)
            while len(emulator.calls) - calls < 30:  # a few more reconciles: every list has been consumed
                await asyncio.sleep(0.2)
            return rss_mib(process.pid)
        finally:
            process.terminate()
            await process.wait()
    finally:
        await stop_emulator(emulator, server)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unrelated", type=int, default=2000)
    args = parser.parse_args()
    print(f"operator RSS (MiB) with 0 and {args.unrelated} unrelated Deployments in another namespace")
    for name, baseline in (("ours (server-side selector)", False), ("baseline (client-side labels=)", True)):
        empty = await measure(0, baseline)
        full = await measure(args.unrelated, baseline)
        print(f"{name:32} {empty:7.1f} -> {full:7.1f}   growth {full - empty:+6.1f} MiB")


if __name__ == "__main__":
    asyncio.run(main())
