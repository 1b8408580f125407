"""What the decision core remembers about one pool: recent recommendations and the last scale time.

The HPA's stabilisation works on the recommendations of a recent window, not on the last decision:
scaling down goes only as far as the *highest* recommendation of the scale-down window, so a brief
dip in demand (a worker that just took the whole backlog) never removes workers that the next
moment needs. The history is plain data; `decide()` reads it and the loop appends to it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class History:
    #: Runs of equal recommendations, oldest first: [first time, last time, recommendation]. A pool
    #: polled every second keeps the same recommendation for minutes; one run instead of one entry per
    #: poll makes `within` O(changes) rather than O(window) (scanning 300 entries twice per poll of
    #: 1,000 pools was 5 % of the operator's CPU, py-spy). Min and max over a window are unchanged.
    recommendations: deque[list[float]] = field(default_factory=deque)
    #: When the pool was last scaled (None = never by us).
    last_scale_time: float | None = None
    #: The last replica count we asked for (used when nothing at all is known about the pool).
    last_desired: int | None = None

    def within(self, now: float, window: float) -> list[int]:
        """Recommendations made in (now - window, now]; a window of 0 holds none."""
        if window <= 0:
            return []
        return [int(rec) for first, last, rec in self.recommendations
                if last > now - window and first <= now]

    def record(self, now: float, recommendation: int, horizon: float) -> None:
        """Remember a recommendation and forget those older than `horizon` seconds."""
        runs = self.recommendations
        if runs and runs[-1][2] == recommendation and runs[-1][1] <= now:
            runs[-1][1] = now
        else:
            runs.append([now, now, recommendation])
        while runs and runs[0][1] <= now - horizon:
            runs.popleft()
        if runs and runs[0][0] <= now - horizon:
            runs[0][0] = now - horizon + 1e-9  # the part of a run older than the horizon is forgotten too

    def scaled(self, now: float, desired: int) -> None:
        self.last_scale_time = now
        self.last_desired = desired
