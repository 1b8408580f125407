"""`python -m bench.simulate --pareto`: each policy's knob swept over the four traces and several seeds.

Per trace and setting, the waits of all seeds are pooled (a never-finished task is an unbounded
wait) and the worker-seconds averaged; each policy is then a curve of p95 wait against
worker-seconds. Printed per trace: the curves, tuned KEDA's p95 at our default's worker-seconds
over ours (the factor at equal worker-seconds, read off its lower envelope by linear
interpolation; "n/a" outside its range), the same for our best targetWaitSeconds point, and the
oracle's p95 at our worker-seconds (our distance to the limit).
"""

from __future__ import annotations

import argparse
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

from bench.sim_models import Keda, Oracle, Ours
from bench.simulate import DURATION, MAX_REPLICAS, Controller, default_policy, percentile, run
from bench.traces import TRACES, make

TARGET_PER_SLOT = (0.5, 1, 1.5, 2, 3, 5, 10)
TARGET_WAIT = (10, 20, 30, 45, 60, 90, 120, 240)
KEDA_DEFAULT_LIST_LENGTH = (1, 2, 5, 10)
KEDA_TUNED_LIST_LENGTH = (1, 1.5, 2, 3, 4, 6, 10, 20)
ORACLE_TARGET_WAIT = (5, 10, 20, 30, 45, 60, 90, 120, 240)


@dataclass(frozen=True)
class Point:
    policy: str
    knob: str
    p95: float
    worker_seconds: float
    killed: int
    unfinished: int


def sweeps(concurrency: int, startup: float) -> dict[str, list[tuple[str, Callable[[list], Controller]]]]:
    return {
        "ours targetPerSlot": [(f"{v:g}", lambda tr, v=v: Ours(default_policy(target_per_slot=v, target_wait=None),
                                                               concurrency))
                               for v in TARGET_PER_SLOT],
        "ours targetWaitSeconds": [(f"{v:g}", lambda tr, v=v: Ours(default_policy(target_wait=v), concurrency))
                                   for v in TARGET_WAIT],
        "KEDA defaults": [(f"{v:g}", lambda tr, v=v: Keda(list_length=v, max_replicas=MAX_REPLICAS))
                          for v in KEDA_DEFAULT_LIST_LENGTH],
        "KEDA tuned": [(f"{v:g}", lambda tr, v=v: Keda(tuned=True, list_length=v, max_replicas=MAX_REPLICAS))
                       for v in KEDA_TUNED_LIST_LENGTH],
        "oracle": [(f"{v:g}", lambda tr, v=v: Oracle(tr, target_wait=v, concurrency=concurrency, startup=startup,
                                                   max_replicas=MAX_REPLICAS)) for v in ORACLE_TARGET_WAIT],
    }


def envelope(points: list[Point]) -> list[Point]:
    """The lower envelope: points no other point beats on both p95 and worker-seconds, by worker-seconds."""
    finite = sorted((p for p in points if math.isfinite(p.p95)), key=lambda p: (p.worker_seconds, p.p95))
    out: list[Point] = []
    for p in finite:
        if not out or p.p95 < out[-1].p95:
            out.append(p)
    return out


def p95_at(curve: list[Point], worker_seconds: float) -> float | None:
    """The envelope's p95 at `worker_seconds` (linear between neighbours); None outside its range."""
    for a, b in itertools.pairwise(curve):
        if a.worker_seconds <= worker_seconds <= b.worker_seconds:
            span = b.worker_seconds - a.worker_seconds
            t = 0.0 if span == 0 else (worker_seconds - a.worker_seconds) / span
            return a.p95 + t * (b.p95 - a.p95)
    if curve and curve[-1].worker_seconds <= worker_seconds:
        return curve[-1].p95  # with more workers it can only do as well as its best point (flat)
    return None


def worker_seconds_at(curve: list[Point], p95: float) -> float | None:
    """The envelope's worker-seconds at `p95` (linear between neighbours); None if it never gets that low."""
    for a, b in itertools.pairwise(curve):
        if b.p95 <= p95 <= a.p95:
            span = a.p95 - b.p95
            t = 0.0 if span == 0 else (a.p95 - p95) / span
            return a.worker_seconds + t * (b.worker_seconds - a.worker_seconds)
    if curve and p95 >= curve[0].p95:
        return curve[0].worker_seconds
    return None


def _ratio(num: float | None, den: float) -> str:
    if num is None:
        return "n/a (outside its range)"
    if den <= 0:
        return "inf" if num > 0 else "1.00x"
    return f"{num / den:.2f}x"


def pareto(args: argparse.Namespace, plot: Callable[..., None] | None) -> int:
    seeds = args.seeds
    default = default_policy()
    print(f"Pareto sweep: seeds {','.join(map(str, seeds))}, concurrency {args.concurrency}, startup "
          f"{args.startup:g} s, grace {args.grace:g} s for every model, replicas 0..{MAX_REPLICAS}; waits pooled over "
          f"seeds, worker-seconds averaged\n")
    curves: dict[str, dict[str, list[Point]]] = {}
    defaults: dict[str, Point] = {}
    for name in args.trace or list(TRACES):
        traces = [make(name, seed) for seed in seeds]
        work_floor = sum(a.duration for tr in traces for a in tr) / len(seeds) / args.concurrency
        curves[name] = {}
        print(f"{name}: {sum(map(len, traces)) / len(seeds):,.0f} tasks per seed; work floor "
              f"{work_floor:,.0f} worker-seconds (task time / concurrency)")
        print(f"  {'policy':<24}{'knob':>6}{'p95 wait (s)':>14}{'worker-s':>11}{'killed':>8}{'unfinished':>11}")
        runs = [("ours default", "-", lambda tr: Ours(default, args.concurrency))]
        for policy, settings in sweeps(args.concurrency, args.startup).items():
            runs += [(policy, knob, factory) for knob, factory in settings]
        for policy, knob, factory in runs:
            waits: list[float] = []
            worker_seconds, killed, unfinished = 0.0, 0, 0
            for seed, trace in zip(seeds, traces, strict=True):
                result = run(trace, factory(trace), duration=DURATION[name], concurrency=args.concurrency,
                             startup=args.startup, grace=args.grace, seed=seed)
                waits += result.waits
                worker_seconds += result.worker_seconds / len(seeds)
                killed += result.killed
                unfinished += result.unfinished
            point = Point(policy, knob, percentile(waits, 0.95), worker_seconds, killed, unfinished)
            if policy == "ours default":
                defaults[name] = point
            else:
                curves[name].setdefault(policy, []).append(point)
            p95 = "unbounded" if math.isinf(point.p95) else f"{point.p95:.1f}"
            print(f"  {policy:<24}{knob:>6}{p95:>14}{worker_seconds:>11,.0f}{killed:>8}{unfinished:>11}")
        ours = defaults[name]
        keda = envelope(curves[name]["KEDA tuned"])
        oracle = envelope(curves[name]["oracle"])
        ours_curve = envelope(curves[name]["ours targetPerSlot"] + curves[name]["ours targetWaitSeconds"])
        print(f"  at our default's {ours.worker_seconds:,.0f} worker-seconds (p95 {ours.p95:.1f} s): "
              f"tuned KEDA's p95 / ours = {_ratio(p95_at(keda, ours.worker_seconds), ours.p95)}")
        limit = worker_seconds_at(oracle, ours.p95)
        best = min(oracle, key=lambda p: p.p95)
        print(f"  oracle: p95 {_fmt(p95_at(oracle, ours.worker_seconds))} s at our worker-seconds; our p95 with "
              f"{_fmt(limit, '{:,.0f}')} worker-seconds ({_ratio(ours.worker_seconds, limit or 0) if limit else 'n/a'} "
              f"= ours / oracle); its lowest p95 {best.p95:.1f} s at {best.worker_seconds:,.0f}")
        pairs = [(k, p.p95) for p in ours_curve if (k := p95_at(keda, p.worker_seconds)) is not None and p.p95 > 0]
        factors = [k / mine for k, mine in pairs]
        if factors:
            print(f"  along our curve (both policies' points): tuned KEDA's p95 / ours from {min(factors):.2f}x to "
                  f"{max(factors):.2f}x ({len(factors)} points inside KEDA's range)")
        print()
    if plot is not None:
        plot(args.plot, curves=curves, defaults=defaults, seeds=seeds, concurrency=args.concurrency,
             startup=args.startup, grace=args.grace)
        print(f"wrote {args.plot}")
    return 0


def _fmt(x: float | None, form: str = "{:.1f}") -> str:
    return "n/a" if x is None else form.format(x)
