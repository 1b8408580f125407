"""Replay load traces through a worker-pool model: our autoscaler beside KEDA + HPA (defaults and tuned)
and an oracle that knows the trace.

    .venv/bin/python -m bench.simulate [--seed 1] [--trace bursty] [--startup 15] [--concurrency 2]
                                       [--plot docs/autoscaling-bursty.png]
    .venv/bin/python -m bench.simulate --pareto [--seeds 1,2,3] [--plot docs/autoscaling-pareto.png]
    .venv/bin/python -m bench.simulate --target-wait 60 [--seeds 1,2,3]

The pool model is bench/sim_pool.py, the controllers bench/sim_models.py (their docstrings say what
each models). Fair by construction: every model gets the same grace period, at least the longest
task (`--grace`, default 600 s), so a warm shutdown never kills a task; the Kubernetes default of
30 s is a separate, labelled block. Scale-in victims are chosen the way the ReplicaSet controller
ranks pods; ours marks busy pods with a pod-deletion-cost first, KEDA does not. A task that never
finished counts as an unbounded wait in every percentile (it is never left out).

`--pareto` sweeps each policy's knob (ours: targetPerSlot and targetWaitSeconds; KEDA: listLength;
the oracle: its targetWaitSeconds) over the four traces and `--seeds`, pooling the waits of all
seeds, and prints p95 wait against worker-seconds per trace, then the factor at equal worker-seconds
(tuned KEDA's p95 on its curve at our default's worker-seconds, over ours) and our distance to the
oracle. `--target-wait W` runs the steady trace with task durations x0.25, x1 and x3 under
`targetWaitSeconds: W` and prints the p95 wait beside W.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from bookgen_operator.core.autoscaler.policy import Policy

from bench.sim_models import Keda, Oracle, Ours
from bench.sim_pool import Pool, Sample, Task
from bench.traces import TRACES, Arrival, make

DURATION = {"steady": 3600, "bursty": 3600, "diurnal": 7200, "spike-to-zero": 3600}
TAIL = 900  # seconds simulated after the trace, so scale-in (and its cost) is counted
MIN_REPLICAS, MAX_REPLICAS = 0, 40
DEFAULT_GRACE = 600.0  # the longest task of the traces (traces.MAX_DURATION)
KUBERNETES_GRACE = 30.0

Controller = Ours | Keda | Oracle


@dataclass(frozen=True)
class Result:
    waits: list[float]  # math.inf for a task that never finished
    worker_seconds: float
    actions: int
    killed: int
    unfinished: int

    def pct(self, q: float) -> float:
        return percentile(self.waits, q)


def percentile(waits: Sequence[float], q: float) -> float:
    if not waits:
        return float("nan")
    ordered = sorted(waits)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def run(trace: list[Arrival], controller: Controller, *, duration: int, concurrency: int, startup: float,
        grace: float, seed: int = 0, record: list[Sample] | None = None, tail: int = TAIL,
        drain: int = 4 * 3600) -> Result:
    pool = Pool(concurrency, startup, grace, seed)
    tasks = [Task(a) for a in trace]
    index, now = 0, 0
    horizon = duration + tail
    while now <= horizon or ((pool.pending or pool.in_flight) and now <= horizon + drain):
        while index < len(tasks) and tasks[index].arrival.at <= now:
            pool.enqueue(tasks[index])
            index += 1
        pool.step(now)
        controller.tick(pool, now)
        if record is not None:
            record.append(Sample(now, pool.pending, pool.base_pending, pool.in_flight, len(pool.workers)))
        now += 1
    waits = [t.start - t.arrival.at if t.end is not None and t.start is not None else math.inf for t in tasks]
    return Result(waits, pool.worker_seconds(now), pool.actions, pool.killed, sum(t.end is None for t in tasks))


def default_policy(**overrides: float | None) -> Policy:
    return replace(Policy(min_replicas=MIN_REPLICAS, max_replicas=MAX_REPLICAS), **overrides)


def models(trace: list[Arrival], concurrency: int, startup: float) -> list[Callable[[], Controller]]:
    """The side-by-side models: ours at its defaults, KEDA at its defaults and tuned, the oracle."""
    return [
        lambda: Ours(default_policy(), concurrency),
        lambda: Keda(max_replicas=MAX_REPLICAS),
        lambda: Keda(tuned=True, list_length=2 * concurrency, max_replicas=MAX_REPLICAS),
        lambda: Oracle(trace, target_wait=default_policy().target_wait or 60, concurrency=concurrency,
                       startup=startup, max_replicas=MAX_REPLICAS),
    ]


def _fmt(x: float) -> str:
    return "unbounded" if math.isinf(x) else f"{x:.1f}"


def table(name: str, trace: list[Arrival], results: list[tuple[str, Result]], title: str = "") -> str:
    width = 16
    rows = [f"{name}: {len(trace)} tasks{title}", " " * 22 + "".join(f"{label:>{width}}" for label, _ in results)]

    def row(label: str, values: list[str]) -> None:
        rows.append(f"  {label:<20}" + "".join(f"{v:>{width}}" for v in values))

    for q in (0.50, 0.95, 0.99):
        row(f"queue wait p{int(q * 100)} (s)", [_fmt(r.pct(q)) for _, r in results])
    row("worker-seconds", [f"{r.worker_seconds:,.0f}" for _, r in results])
    row("scaling actions", [str(r.actions) for _, r in results])
    row("tasks killed", [str(r.killed) for _, r in results])
    row("never finished", [str(r.unfinished) for _, r in results])
    return "\n".join(rows)


def side_by_side(args: argparse.Namespace) -> int:
    plot_name = None
    if args.plot:
        plot = _need_matplotlib("plot")
        plot_name = args.trace[0] if args.trace else "bursty"
    policy = default_policy()
    print(f"seed {args.seed}, concurrency {args.concurrency}, worker startup {args.startup:g} s, replicas "
          f"{MIN_REPLICAS}..{MAX_REPLICAS}, grace {args.grace:g} s for every model; ours: Policy defaults "
          f"({_policy_text(policy)}); KEDA tuned: listLength {2 * args.concurrency} over all lists + in flight; "
          f"oracle: our control law knowing the trace\n")
    series: list[tuple[str, list[Sample]]] = []
    plotted: list[tuple[str, Result]] = []
    for name in args.trace or list(TRACES):
        trace = make(name, args.seed)
        results = []
        for make_model in models(trace, args.concurrency, args.startup):
            controller = make_model()
            record: list[Sample] | None = [] if name == plot_name else None
            result = run(trace, controller, duration=DURATION[name], concurrency=args.concurrency,
                         startup=args.startup, grace=args.grace, seed=args.seed, record=record)
            results.append((controller.name, result))
            if record is not None:
                series.append((controller.name, record))
        print(table(name, trace, results) + "\n")
        short = []
        for make_model in models(trace, args.concurrency, args.startup)[:3]:
            controller = make_model()
            short.append((controller.name, run(trace, controller, duration=DURATION[name], concurrency=args.concurrency,
                                               startup=args.startup, grace=KUBERNETES_GRACE, seed=args.seed)))
        print(table(name, trace, short, title=f", grace {KUBERNETES_GRACE:g} s (the Kubernetes default)") + "\n")
        if name == plot_name:
            plotted = results
    if plot_name:
        plot(args.plot, trace_name=plot_name, seed=args.seed, series=series, results=plotted,
             end=DURATION[plot_name] + TAIL, trace_end=DURATION[plot_name], tasks=len(make(plot_name, args.seed)),
             concurrency=args.concurrency, startup=args.startup)
        print(f"wrote {args.plot} ({plot_name}, seed {args.seed})")
    return 0


def _policy_text(policy: Policy) -> str:
    if policy.target_wait is not None:
        head = (f"target wait {policy.target_wait:g} s (until a service time is known: "
                f"{policy.target_per_slot:g} per slot)")
    else:
        head = f"target {policy.target_per_slot:g} per slot"
    guard = f", oldest-age guard {policy.target_oldest_age:g} s" if policy.target_oldest_age else ""
    return f"{head}{guard}, scale-down window {policy.scale_down_window:g} s, poll {policy.poll_interval:g} s"


def target_wait_check(args: argparse.Namespace) -> int:
    target = args.target_wait
    seeds = args.seeds
    print(f"steady trace, seeds {','.join(map(str, seeds))}, targetWaitSeconds {target:g}, concurrency "
          f"{args.concurrency}, startup {args.startup:g} s, grace {args.grace:g} s (band: +-25 %)")
    print(f"  {'durations':<12}{'p50 (s)':>10}{'p95 (s)':>10}{'p95 / target':>14}{'worker-s':>12}  verdict")
    ok = True
    for scale in (0.25, 1.0, 3.0):
        waits: list[float] = []
        worker_seconds = 0.0
        for seed in seeds:
            trace = make("steady", seed, duration_scale=scale)
            result = run(trace, Ours(default_policy(target_wait=target), args.concurrency), duration=DURATION["steady"],
                         concurrency=args.concurrency, startup=args.startup, grace=max(args.grace, 600 * scale),
                         seed=seed)
            waits += result.waits
            worker_seconds += result.worker_seconds / len(seeds)
        p95 = percentile(waits, 0.95)
        inside = abs(p95 / target - 1) <= 0.25
        ok &= inside
        print(f"  x{scale:<11g}{percentile(waits, 0.5):>10.1f}{p95:>10.1f}{p95 / target:>14.2f}"
              f"{worker_seconds:>12,.0f}  {'within' if inside else 'OUTSIDE'}")
    print("all within +-25 %" if ok else "NOT all within +-25 %")
    return 0


def _need_matplotlib(what: str) -> Callable[..., None]:
    try:
        if what == "plot":
            from bench.plot_simulation import plot
            return plot
        from bench.plot_simulation import plot_pareto
        return plot_pareto
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] != "matplotlib":
            raise
        sys.exit("--plot needs matplotlib: pip install -e '.[bench]'")


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds takes comma-separated integers (got {text!r})") from None
    if not seeds:
        raise argparse.ArgumentTypeError("--seeds needs at least one seed")
    return seeds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seeds", type=_seeds, default=[1, 2, 3], help="for --pareto and --target-wait")
    parser.add_argument("--trace", choices=sorted(TRACES), action="append")
    parser.add_argument("--startup", type=float, default=15.0, help="seconds from pod creation to a ready worker")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--grace", type=float, default=DEFAULT_GRACE, help="termination grace period for every model")
    parser.add_argument("--pareto", action="store_true", help="sweep every policy's knob (see above)")
    parser.add_argument("--target-wait", type=float, metavar="SECONDS", help="check targetWaitSeconds (see above)")
    parser.add_argument("--plot", metavar="PATH", help="draw to this PNG: queue depth and replicas over time for one "
                        "trace (the --trace given, else bursty), or the Pareto curves with --pareto")
    args = parser.parse_args(argv)
    if args.plot and not args.pareto and args.trace and len(args.trace) > 1:
        parser.error("--plot draws one trace: give at most one --trace")
    if args.grace < 0 or args.startup < 0 or args.concurrency < 1:
        parser.error("--grace and --startup must be >= 0 and --concurrency >= 1")
    started = time.perf_counter()
    if args.pareto:
        from bench.pareto import pareto

        code = pareto(args, _need_matplotlib("pareto") if args.plot else None)
    elif args.target_wait is not None:
        if args.target_wait <= 0:
            parser.error("--target-wait must be above 0 seconds")
        code = target_wait_check(args)
    else:
        code = side_by_side(args)
    print(f"(simulated in {time.perf_counter() - started:.1f} s)")
    return code


if __name__ == "__main__":
    sys.exit(main())
