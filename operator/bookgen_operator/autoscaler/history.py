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
    #: (time, recommendation) pairs, oldest first.
    recommendations: deque[tuple[float, int]] = field(default_factory=deque)
    #: When the pool was last scaled (None = never by us).
    last_scale_time: float | None = None
    #: The last replica count we asked for (used when nothing at all is known about the pool).
    last_desired: int | None = None

    def within(self, now: float, window: float) -> list[int]:
        """Recommendations made in (now - window, now]; a window of 0 holds none."""
        if window <= 0:
            return []
        return [rec for at, rec in self.recommendations if now - window < at <= now]

    def record(self, now: float, recommendation: int, horizon: float) -> None:
        """Remember a recommendation and forget those older than `horizon` seconds."""
        self.recommendations.append((now, recommendation))
        while self.recommendations and self.recommendations[0][0] <= now - horizon:
            self.recommendations.popleft()

    def scaled(self, now: float, desired: int) -> None:
        self.last_scale_time = now
        self.last_desired = desired
