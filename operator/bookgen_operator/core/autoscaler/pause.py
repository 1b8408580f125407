"""Pausing a queue's autoscaling for maintenance, by annotation, as KEDA users know it
(`autoscaling.keda.sh/paused`, `autoscaling.keda.sh/paused-replicas`).

- `bookgen.io/paused: "true"` holds every pool at the replicas it has when the pause is seen;
- `bookgen.io/paused-replicas: "N"` (alone or with the first) moves every pool to N and holds it there;
- removing the annotations (or `paused: "false"`) resumes scaling at the next poll.

An annotation is not validated by the API server, so a value we do not understand still pauses (at the
current replicas): someone who wrote a pause annotation wants the pools left alone, and the status says
what was not understood. Even paused, a pool never goes below its busy workers (`hold()`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

PAUSED = "bookgen.io/paused"
PAUSED_REPLICAS = "bookgen.io/paused-replicas"

#: The most replicas a pause may ask for (a typo such as 1000 must not start a thousand pods).
MAX_PAUSED_REPLICAS = 1000

_YES = frozenset({"true", "yes", "1", "on"})
_NO = frozenset({"false", "no", "0", "off"})


@dataclass(frozen=True)
class Pause:
    #: None: each pool keeps the replicas it has; a number: every pool is moved to it.
    replicas: int | None = None
    #: An annotation value that was not understood (the pause then holds the current replicas).
    problem: str | None = None

    def describe(self) -> str:
        where = "at the current replicas" if self.replicas is None else f"at {self.replicas} replicas"
        text = f"paused {where} by the annotation {PAUSED_REPLICAS if self.replicas is not None else PAUSED}"
        return f"{text} ({self.problem})" if self.problem else text


def pause_from(annotations: Mapping[str, str] | None) -> Pause | None:
    """The pause the queue's annotations ask for, or None when it is not paused."""
    found = annotations or {}
    count, flag = found.get(PAUSED_REPLICAS), found.get(PAUSED)
    if flag is not None and flag.strip().lower() in _NO:
        return None
    if count is not None:
        text = count.strip()
        if text.isdigit() and int(text) <= MAX_PAUSED_REPLICAS:
            return Pause(int(text))
        return Pause(None, f"{PAUSED_REPLICAS} must be a whole number from 0 to {MAX_PAUSED_REPLICAS}, "
                           f"got {count!r}: the current replicas are held")
    if flag is None:
        return None
    if flag.strip().lower() in _YES:
        return Pause()
    return Pause(None, f"{PAUSED} should be true or false, got {flag!r}: paused all the same")


def hold(pause: Pause, current: int, busy: int) -> int:
    """The replicas a paused pool keeps: its current count, or the asked count but never fewer than its
    busy workers (a pause for maintenance must not kill a book in the middle of a chapter)."""
    return current if pause.replicas is None else max(pause.replicas, busy)
