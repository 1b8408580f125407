"""Load traces for bench/simulate.py: deterministic (seeded) task arrivals with durations and priorities.

A task's public priority decides its kombu list (docs/tasks.md, Priorities; the default steps 0..9): 10 lands in
the base list, 8 in `queue\\x06\\x162`, the default 5 in `queue\\x06\\x165`, lower ones further
down. The mix below is what a BookGen content pool sees: mostly default-priority chapters, some
urgent regenerations, some low-priority backfill.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

#: (public priority, share of tasks)
PRIORITY_MIX = ((10, 0.10), (8, 0.20), (5, 0.50), (2, 0.20))
MEDIAN_DURATION = 20.0  # seconds; lognormal, so a few tasks run minutes
DURATION_SIGMA = 0.7
MAX_DURATION = 600.0


@dataclass(frozen=True)
class Arrival:
    at: float
    duration: float
    priority: int


def _task(rng: random.Random, at: float) -> Arrival:
    duration = min(MAX_DURATION, rng.lognormvariate(math.log(MEDIAN_DURATION), DURATION_SIGMA))
    pick, acc = rng.random(), 0.0
    chosen = PRIORITY_MIX[-1][0]
    for priority, share in PRIORITY_MIX:
        acc += share
        if pick < acc:
            chosen = priority
            break
    return Arrival(at, duration, chosen)


def _poisson(rng: random.Random, rate: Callable[[float], float], start: float, end: float,
             peak: float) -> list[Arrival]:
    """Non-homogeneous Poisson arrivals by thinning (rate(t) <= peak)."""
    out, t = [], start
    while True:
        t += rng.expovariate(peak)
        if t >= end:
            return out
        if rng.random() < rate(t) / peak:
            out.append(_task(rng, t))


def _burst(rng: random.Random, at: float, count: int, spread: float) -> list[Arrival]:
    return [_task(rng, at + rng.random() * spread) for _ in range(count)]


def steady(rng: random.Random) -> list[Arrival]:
    return _poisson(rng, lambda t: 0.5, 0, 3600, 0.5)


#: When bursty's batches start (seconds), and spike-to-zero's one spike.
BURSTS: dict[str, tuple[float, ...]] = {"bursty": tuple(range(120, 3600, 600)), "spike-to-zero": (60,)}


def bursty(rng: random.Random) -> list[Arrival]:
    """A trickle, and every 10 minutes a user submits a batch of books: 300 chapters within 10 s."""
    tasks = _poisson(rng, lambda t: 0.05, 0, 3600, 0.05)
    for start in BURSTS["bursty"]:
        tasks += _burst(rng, start, 300, 10)
    return tasks


def diurnal(rng: random.Random) -> list[Arrival]:
    """A day compressed into two hours: from 0.02 to 1.5 tasks/s and back."""
    def rate(t: float) -> float:
        return 0.02 + 1.48 * (1 - math.cos(2 * math.pi * t / 7200)) / 2
    return _poisson(rng, rate, 0, 7200, 1.5)


def spike_to_zero(rng: random.Random) -> list[Arrival]:
    """One spike of 500 tasks, then nothing for an hour (the pool should go back to zero)."""
    return _burst(rng, BURSTS["spike-to-zero"][0], 500, 5)


TRACES: dict[str, Callable[[random.Random], list[Arrival]]] = {
    "steady": steady,
    "bursty": bursty,
    "diurnal": diurnal,
    "spike-to-zero": spike_to_zero,
}


def make(name: str, seed: int, duration_scale: float = 1.0) -> list[Arrival]:
    """The trace, with every task duration multiplied by `duration_scale` (same arrivals and priorities)."""
    trace = sorted(TRACES[name](random.Random(f"{name}:{seed}")), key=lambda a: a.at)
    if duration_scale != 1.0:
        trace = [Arrival(a.at, a.duration * duration_scale, a.priority) for a in trace]
    return trace


def compressed(name: str, seed: int, factor: float, window: float) -> list[Arrival]:
    """The trace made `factor` times shorter for real pods (bench/real_autoscale.py): every arrival time
    and duration divided by `factor`, one task in `factor` kept (seeded), and only the arrivals of the
    first `window` seconds after compression. The shape stays: the same arrival rate per second between
    bursts, bursts `factor` times smaller and closer together, the same mix of priorities, and task
    durations with the same spread around a median `factor` times shorter."""
    if factor < 1 or window <= 0:
        raise ValueError("compressed() needs factor >= 1 and window > 0")
    keep = random.Random(f"{name}:{seed}:keep-1-in-{factor:g}")
    out = []
    for a in make(name, seed):
        if keep.random() < 1 / factor and a.at / factor < window:
            out.append(Arrival(a.at / factor, a.duration / factor, a.priority))
    return out
