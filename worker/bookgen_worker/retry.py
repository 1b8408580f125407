"""BookGen's backoff schedule: base * factor**n, capped, with jitter."""

from __future__ import annotations

import random

from .config import RetryPolicy


def backoff_delay(policy: RetryPolicy, retries_done: int, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number `retries_done + 1`.

    Jitter is "equal jitter": a uniform draw from the upper half of the delay, so delays still grow
    from one retry to the next while workers that failed together do not retry together.
    """
    delay = min(policy.backoff_max, policy.backoff_base * policy.backoff_factor**retries_done)
    if policy.jitter:
        delay = (rng or random).uniform(delay / 2, delay)
    return delay
