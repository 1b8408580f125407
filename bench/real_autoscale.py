"""Our autoscaler beside real KEDA + the real HPA, on real worker pods of the real node (issue 25).

    eval "$(./scripts/cluster up | tail -1)"
    python -m bench.real_autoscale [--factor 6] [--window 300] [--tail 90] [--only ours,keda-tuned,...]

One trace (bench/traces.py's bursty, seed 1, compressed `--factor` times by traces.compressed: a trickle
and a batch of ~50 chapters every 100 s, task durations around 3.4 s) is replayed against the content
pool of a fresh BookGenQueue, once per controller (bench/real_replay.py):
- **ours**, defaults (`source: redis`), and **ours, `source: prometheus`** reading the Prometheus that the
  real Prometheus Operator runs (tests/cluster/prometheus_stack.py), both as the chart's operator pod;
- **KEDA tuned** like for like (bench/peers/keda_objects.py: every priority list and the tasks in flight
  through `scalingModifiers`, our polling, stabilisation and grace), at two `listLength` targets chosen
  so that their pod-seconds bracket ours (from the simulator), so tuned KEDA's p95 can be read at our
  pod-seconds the way `bench.simulate --pareto` reads its curves;
- **KEDA at its defaults**, a labelled row of its own.
KEDA (operator and metrics adapter, bench/peers/keda.py, built from the module proxy by
scripts/build-keda.sh) and the HPA of the real kube-controller-manager scale the same Deployment.

Per run: p50/p95/max wait of every task (publication to first start; a task that never finished counts
as unbounded), pod-seconds of the pool (pod creation to gone), attempts killed and tasks run twice,
scale actions (changes of the Deployment's replicas), and per burst the time from its first task to
the first task started on a pod created for it. Beside each run, the simulator's prediction
(bench/simulate.py's models) for the same compressed trace, with the worker start-up time (pod
creation to Ready) and grace period measured in that run.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import statistics
import sys
import time

from bench import real_replay
from bench.pareto import Point, envelope, p95_at
from bench.peers import keda
from bench.real_replay import Controller
from bench.real_runs import RealResult, summarize
from bench.sim_models import Keda, Ours
from bench.simulate import Result, default_policy, run
from bench.traces import BURSTS, compressed
from tests.cluster import controlplane, operator_pods, prometheus_stack
from tests.cluster.conftest import Cluster, connect
from tests.cluster.product import restricted_namespace
from tests.support.waiting import wait_for

TRACE, SEED = "bursty", 1
KEDA_LIST_LENGTHS = (2, 3, 4, 6, 8, 10, 12, 16, 20, 24, 32, 48)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def simulate(controller: Controller, trace: list, args: argparse.Namespace, startup: float, grace: float) -> Result:
    if controller.kind == "ours":
        model: Ours | Keda = Ours(default_policy(min_replicas=0, max_replicas=args.max_replicas), args.concurrency)
    else:
        model = Keda(tuned=controller.tuned, list_length=controller.list_length, max_replicas=args.max_replicas,
                     poll=1 if controller.tuned else None)
    return run(trace, model, duration=int(args.window), concurrency=args.concurrency, startup=startup, grace=grace,
               seed=SEED, tail=int(args.tail), drain=int(args.drain))


def bracket(trace: list, args: argparse.Namespace) -> tuple[float, float]:
    """The two listLength targets of tuned KEDA whose simulated pod-seconds lie on either side of ours."""
    ours = simulate(Controller("ours", "ours"), trace, args, args.startup_guess, 630).worker_seconds
    costs = [(v, simulate(Controller("k", "keda", tuned=True, list_length=v), trace, args, args.startup_guess,
                          630).worker_seconds) for v in KEDA_LIST_LENGTHS]
    for (a, ca), (b, cb) in itertools.pairwise(costs):
        if ca >= ours >= cb:
            return a, b
    return (costs[0][0], costs[1][0]) if ours > costs[0][1] else (costs[-2][0], costs[-1][0])


def controllers(trace: list, args: argparse.Namespace) -> list[Controller]:
    low, high = bracket(trace, args)
    every = [
        Controller("ours", "ours"),
        Controller("ours, source: prometheus", "ours", source="prometheus"),
        Controller(f"KEDA tuned, listLength {low:g}", "keda", tuned=True, list_length=low),
        Controller(f"KEDA tuned, listLength {high:g}", "keda", tuned=True, list_length=high),
        Controller("KEDA defaults", "keda"),
    ]
    keys = {"ours": 0, "ours-prometheus": 1, "keda-tuned": 2, "keda-tuned-2": 3, "keda-defaults": 4}
    wanted = [keys[k] for k in args.only.split(",")] if args.only else list(range(len(every)))
    return [every[i] for i in sorted(set(wanted))]


def _fmt(x: float | None, form: str = "{:.1f}") -> str:
    if x is None:
        return "-"
    return "unbounded" if math.isinf(x) else form.format(x)


def _firsts(values: list[float | None]) -> str:
    return "/".join(_fmt(v, "{:.0f}") for v in values)


HEADER = (f"{'controller':<32}{'':6}{'p50':>8}{'p95':>10}{'max':>10}{'pod-s':>8}{'killed':>7}{'twice':>6}"
          f"{'actions':>8}  {'first task on a new pod, per burst (s)':<38}{'startup':>8}{'load':>6}")
NOTES = ("startup: pod creation -> Ready / -> its first task (pods made while work waited; the simulator gets the "
         "latter); first task on a new pod: from a burst's first task; load: 5-minute load average at the end of "
         "the run (the machine is shared)")


def rows(controller: Controller, real: RealResult, sim: Result, load: float) -> list[str]:
    head = f"{controller.label:<32}"
    return [
        f"{head}{'real':<6}{_fmt(real.pct(.5)):>8}{_fmt(real.pct(.95)):>10}{_fmt(max(real.waits)):>10}"
        f"{real.pod_seconds:>8.0f}{real.killed:>7}{real.run_twice:>6}{real.actions:>8}  "
        f"{_firsts(real.first_on_new_pod):<38}{_fmt(real.startup, '{:.0f}'):>3}/{_fmt(real.to_first_task, '{:.0f}'):<4}"
        f"{load:>6.1f}",
        f"{'':<32}{'sim':<6}{_fmt(sim.pct(.5)):>8}{_fmt(sim.pct(.95)):>10}{_fmt(max(sim.waits)):>10}"
        f"{sim.worker_seconds:>8.0f}{sim.killed:>7}{'-':>6}{sim.actions:>8}",
    ]


def equal_cost(results: list[tuple[Controller, RealResult, Result]]) -> list[str]:
    ours = next(((c, r, s) for c, r, s in results if c.label == "ours"), None)
    tuned = [(c, r, s) for c, r, s in results if c.kind == "keda" and c.tuned]
    if ours is None or len(tuned) < 2:
        return []
    out = []
    for name, cost, p95, curve in (
        ("real", ours[1].pod_seconds, ours[1].pct(.95),
         envelope([Point("k", c.label, r.pct(.95), r.pod_seconds, r.killed, r.unfinished) for c, r, _ in tuned])),
        ("sim", ours[2].worker_seconds, ours[2].pct(.95),
         envelope([Point("k", c.label, s.pct(.95), s.worker_seconds, s.killed, s.unfinished) for c, _, s in tuned])),
    ):
        at = p95_at(curve, cost)
        where = " (outside the two runs: the nearer one)" if at is None else ""
        if at is None and curve:
            at = min(curve, key=lambda p: abs(p.worker_seconds - cost)).p95
        ratio = "n/a" if at is None or p95 <= 0 else f"{at / p95:.2f}x"
        out.append(f"  {name}: ours p95 {_fmt(p95)} s at {cost:.0f} pod-s; tuned KEDA at {cost:.0f} pod-s: p95 "
                   f"{_fmt(at)} s{where} -> tuned KEDA / ours = {ratio}")
    return out


def set_up(cluster: Cluster, want: list[Controller]) -> tuple[list, bool]:
    """Prometheus stack (for `source: prometheus`), KEDA (for its rows), the chart's operator; returns the
    undo steps and whether KEDA was started here."""
    undo: list = []
    if any(c.source == "prometheus" for c in want):
        log("installing the Prometheus Operator and its Prometheus ...")
        stack = prometheus_stack.install(cluster)
        undo.append(lambda: prometheus_stack.remove(stack))
    started_keda = False
    if any(c.kind == "keda" for c in want) and not keda.running(cluster.state_dir):
        log("starting KEDA (building it first if needed: scripts/build-keda.sh) ...")
        keda.start(cluster.state_dir, cluster.state, keda.build())
        started_keda = True
    log("installing the operator from the chart ...")
    system = restricted_namespace(cluster, "bench-system")
    chart = operator_pods.install(cluster, system, "bookgen", *prometheus_stack.CHART_VALUES, replicas=1)
    op = operator_pods.OperatorPods(cluster, chart, audit_mark=cluster.audit.mark())
    undo.append(lambda: (operator_pods.uninstall(cluster, chart), cluster.core.delete_namespace(system)))
    wait_for(op.leader, timeout=180, interval=0.5, what="the operator running and leading")
    return undo, started_keda


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.real_autoscale", description=__doc__.split("\n\n")[0])
    p.add_argument("--factor", type=float, default=6.0, help="trace compression (time and task count)")
    p.add_argument("--window", type=float, default=300.0, help="seconds of the compressed trace replayed")
    p.add_argument("--tail", type=float, default=90.0, help="seconds after the trace (scale-in is counted)")
    p.add_argument("--drain", type=float, default=120.0, help="then at most this long for unfinished tasks")
    p.add_argument("--max-replicas", type=int, default=8)
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--startup-guess", type=float, default=8.0, help="start-up time for choosing listLengths")
    p.add_argument("--only", help="comma-separated: ours,ours-prometheus,keda-tuned,keda-tuned-2,keda-defaults")
    args = p.parse_args(argv)
    trace = compressed(TRACE, SEED, args.factor, args.window)
    bursts = [b / args.factor for b in BURSTS[TRACE] if b / args.factor < args.window]
    want = controllers(trace, args)
    cluster = connect(controlplane.state_dir())
    load0 = os.getloadavg()
    log(f"{TRACE} seed {SEED} compressed x{args.factor:g}: {len(trace)} tasks in {args.window:g} s, bursts at "
        f"{', '.join(f'{b:g}' for b in bursts)} s, durations median "
        f"{statistics.median(a.duration for a in trace):.1f} s; runs: {', '.join(c.label for c in want)}")
    undo, started_keda = set_up(cluster, want)
    results: list[tuple[Controller, RealResult, Result]] = []
    loads: list[float] = []  # the 5-minute load average at the end of each run: the machine is shared
    failed: list[str] = []
    try:
        for controller in want:
            log(f"== {controller.label}: preparing its queue")
            queue = real_replay.prepare(cluster, controller, args.max_replicas, args.concurrency)
            try:
                log(f"== {controller.label}: replaying")
                started = time.time()
                rec = real_replay.replay(cluster, queue, trace, window=args.window, tail=args.tail, drain=args.drain,
                                         progress=log)
                loads.append(os.getloadavg()[1])
            except Exception as exc:  # one failed run is reported as such; the others still run
                failed.append(f"{controller.label}: the run failed ({type(exc).__name__}: {exc})")
                log(failed[-1])
                continue
            finally:
                real_replay.teardown(cluster, queue)
            real = summarize(rec.published, rec.starts, rec.ends, rec.pods, rec.replicas,
                             [rec.t0 + b for b in bursts], rec.end)
            sim = simulate(controller, trace, args, real.to_first_task or real.startup or args.startup_guess, rec.grace)
            results.append((controller, real, sim))
            log("\n".join(rows(controller, real, sim, loads[-1])) + f"   ({time.time() - started:.0f} s)")
    finally:
        for step in reversed(undo):
            step()
        if started_keda:
            keda.stop(cluster.state_dir)
        cluster.api.close()
    print(f"{TRACE} (seed {SEED}) compressed x{args.factor:g}: {len(trace)} tasks in {args.window:g} s "
          f"+ {args.tail:g} s tail; content pool 0..{args.max_replicas} pods x {args.concurrency} slots; "
          f"real pods on one 2-core node; "
          f"load: the 5-minute load average at the end of each run ({load0[1]:.1f} before the first)")
    print(HEADER)
    print(NOTES)
    for (controller, real, sim), load in zip(results, loads, strict=True):
        print("\n".join(rows(controller, real, sim, load)))
    for line in equal_cost(results):
        print(line)
    for line in failed:
        print(line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
