"""What one replay of bench/real_autoscale.py measured, from its raw records: pure functions, no I/O.

Records (all times are this machine's clock, which the node's pods share):
- `published`: task key -> the moment the benchmark sent it (just before `send_task`);
- `starts`/`ends`: every attempt's start and end as the task noted them (bench/bench_sleep.py), with
  the pod that ran it;
- `pods`: each worker pod of the pool, from its creation to the moment it was gone (or the end of the
  run), and when it was first Ready;
- `replicas`: the Deployment's `spec.replicas` each time the sampler saw it change.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bench.simulate import percentile


@dataclass(frozen=True)
class Attempt:
    key: str
    pod: str
    at: float


@dataclass(frozen=True)
class PodLife:
    name: str
    created: float
    ready: float | None  # first seen Ready (None: never)
    gone: float | None  # None: still there at the end of the run


@dataclass(frozen=True)
class RealResult:
    tasks: int
    waits: list[float]  # math.inf for a task that never finished
    pod_seconds: float
    killed: int  # attempts that started and never ended (their pod went away under them)
    run_twice: int  # tasks that started more than once
    actions: int  # changes of the Deployment's spec.replicas
    first_on_new_pod: list[float | None]  # per burst: first task of the burst -> first start on a new pod
    startup: float | None  # median pod creation -> Ready, seconds
    to_first_task: float | None  # median pod creation -> its first task, over pods made while work waited
    unfinished: int

    def pct(self, q: float) -> float:
        return percentile(self.waits, q)


def waits(published: Mapping[str, float], starts: Sequence[Attempt], ends: Sequence[Attempt]) -> list[float]:
    """Each task's wait, from its publication to its first start; unbounded when it never finished
    (a task still running at the end of the run, or started and killed, has not been served)."""
    first_start: dict[str, float] = {}
    for a in starts:
        first_start[a.key] = min(a.at, first_start.get(a.key, math.inf))
    done = {a.key for a in ends}
    return [first_start[k] - at if k in done and k in first_start else math.inf for k, at in published.items()]


def killed_and_twice(starts: Sequence[Attempt], ends: Sequence[Attempt], running_at_end: set[str]) -> tuple[int, int]:
    """(attempts cut short, tasks started more than once). An attempt is cut short when it has no end
    and is not the one still running when the run stopped."""
    started = Counter(a.key for a in starts)
    ended = Counter(a.key for a in ends)
    killed = sum(max(0, n - ended[k] - (1 if k in running_at_end else 0)) for k, n in started.items())
    return killed, sum(1 for n in started.values() if n > 1)


def pod_seconds(pods: Sequence[PodLife], end: float) -> float:
    return sum((p.gone if p.gone is not None else end) - p.created for p in pods)


def actions(replicas: Sequence[tuple[float, int]]) -> int:
    return sum(1 for (_, a), (_, b) in itertools.pairwise(replicas) if a != b)


def first_on_new_pod(bursts: Sequence[float], published: Mapping[str, float], starts: Sequence[Attempt],
                     pods: Sequence[PodLife]) -> list[float | None]:
    """Per burst (its start time on the run's clock): from its first published task to the first task
    that started on a pod created after that task was published. None when no new pod ran a task
    before the next burst (the pool already had room, or never grew)."""
    created = {p.name: p.created for p in pods}
    out: list[float | None] = []
    for i, begin in enumerate(bursts):
        end = bursts[i + 1] if i + 1 < len(bursts) else math.inf
        firsts = [at for at in published.values() if begin <= at < end]
        if not firsts:
            out.append(None)
            continue
        first = min(firsts)
        on_new = [a.at for a in starts if created.get(a.pod, -math.inf) >= first and a.at < end]
        out.append(min(on_new) - first if on_new else None)
    return out


def to_first_task(published: Mapping[str, float], starts: Sequence[Attempt], pods: Sequence[PodLife]) -> float | None:
    """The start-up time that matters to a waiting task: from a pod's creation to the first task it
    started, over the pods created while some published task had not started yet (a worker takes work
    as soon as it is connected, which can be before its readiness probe passes)."""
    first_start: dict[str, float] = {}
    first_on_pod: dict[str, float] = {}
    for a in starts:
        first_start[a.key] = min(a.at, first_start.get(a.key, math.inf))
        first_on_pod[a.pod] = min(a.at, first_on_pod.get(a.pod, math.inf))

    def waiting(t: float) -> bool:
        return any(at <= t < first_start.get(k, math.inf) for k, at in published.items())

    values = [first_on_pod[p.name] - p.created for p in pods if p.name in first_on_pod and waiting(p.created)]
    return statistics.median(values) if values else None


def summarize(published: Mapping[str, float], starts: Sequence[Attempt], ends: Sequence[Attempt],
              pods: Sequence[PodLife], replicas: Sequence[tuple[float, int]], bursts: Sequence[float],
              end: float) -> RealResult:
    ended = {a.key for a in ends}
    running = {a.key for a in starts if a.key not in ended}
    # A task with no end whose pod is still there is still running; one whose pod is gone was killed.
    alive = {p.name for p in pods if p.gone is None}
    last_pod: dict[str, str] = {}
    for a in sorted(starts, key=lambda a: a.at):
        last_pod[a.key] = a.pod
    still_running = {k for k in running if last_pod.get(k) in alive}
    killed, twice = killed_and_twice(starts, ends, still_running)
    startups = [p.ready - p.created for p in pods if p.ready is not None]
    w = waits(published, starts, ends)
    return RealResult(
        tasks=len(published), waits=w, pod_seconds=pod_seconds(pods, end), killed=killed, run_twice=twice,
        actions=actions(replicas), first_on_new_pod=first_on_new_pod(bursts, published, starts, pods),
        startup=statistics.median(startups) if startups else None,
        to_first_task=to_first_task(published, starts, pods), unfinished=sum(math.isinf(x) for x in w),
    )


def per_pod(starts: Sequence[Attempt]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for a in starts:
        counts[a.pod] += 1
    return dict(counts)
