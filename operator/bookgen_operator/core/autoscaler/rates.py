"""Service time and arrival rate of a pool's queues, from the cumulative counters the workers export.

Workers count every task sent and every run time (the runtime histogram's `_sum` and `_count`, per
queue). Sampling those totals once per poll and differencing them over a recent window gives the
mean service time S (run time per finished task) and the arrival rate (tasks sent per second), the
inputs of the latency target (decide.wait_recommendation). Pure: the caller supplies times and totals.
A counter that goes backwards (Redis flushed, a series reset) restarts the window.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass

#: Run times over this long average out the spread of durations (lognormal: a few tasks run minutes).
SERVICE_WINDOW = 300.0
#: Arrivals over this long: short enough to follow a burst, long enough not to read noise as a trend.
ARRIVAL_WINDOW = 60.0


@dataclass(frozen=True)
class Totals:
    sent: float
    finished: float
    runtime_sum: float


class RateWindow:
    def __init__(self, service_window: float = SERVICE_WINDOW, arrival_window: float = ARRIVAL_WINDOW) -> None:
        self.service_window, self.arrival_window = service_window, arrival_window
        self.samples: deque[tuple[float, Totals]] = deque()
        self.last_service_time: float | None = None

    def add(self, at: float, totals: Totals) -> None:
        if self.samples:
            _, last = self.samples[-1]
            if totals.sent < last.sent or totals.finished < last.finished or totals.runtime_sum < last.runtime_sum:
                self.samples.clear()
        self.samples.append((at, totals))
        horizon = max(self.service_window, self.arrival_window)
        while len(self.samples) > 2 and self.samples[1][0] <= at - horizon:
            self.samples.popleft()
        service = self.service_time()
        if service is not None:
            self.last_service_time = service

    def _since(self, window: float) -> tuple[float, Totals] | None:
        """The oldest sample inside the window. A bisection: samples are in time order, and scanning the
        five minutes of 1 s samples twice per poll of every pool was 9 % of the operator's CPU (py-spy)."""
        if not self.samples:
            return None
        index = bisect.bisect_left(self.samples, self.samples[-1][0] - window, key=lambda sample: sample[0])
        return self.samples[index] if index < len(self.samples) else None

    def service_time(self) -> float | None:
        """Mean run time of the tasks finished in the window; the last known one if none finished since."""
        first = self._since(self.service_window)
        if first is None:
            return self.last_service_time
        _, start = first
        end = self.samples[-1][1]
        done = end.finished - start.finished
        if done <= 0:
            return self.last_service_time
        return (end.runtime_sum - start.runtime_sum) / done

    def arrival_rate(self) -> float | None:
        """Tasks sent per second over the window (None until two samples span some time)."""
        first = self._since(self.arrival_window)
        if first is None:
            return None
        at, start = first
        now, end = self.samples[-1]
        if now - at <= 0:
            return None
        return max(0.0, (end.sent - start.sent) / (now - at))
