"""How much memory the managed Redis may fill, and what it does when it is full.

A queue must never lose a task, so Redis always runs with `maxmemory-policy noeviction`: when full it
refuses writes that would grow it (a producer gets an OOM error it can report) and still serves
reads, pops and deletes, so workers drain the queue and memory frees by itself. Any other policy
would make Redis delete keys, and for a queue every key is a task, a job or an unacknowledged
delivery.

Without `--maxmemory`, Redis grows until the kernel's OOM killer ends the container at its memory
limit: every client sees the connection drop, and what the append-only file had not yet flushed is
gone. So the default maxmemory is a fraction of the container's limit (MAXMEMORY_FRACTION), leaving
room for what Redis holds outside its dataset but inside the container: the allocator's
fragmentation, client query and output buffers (a worker's BRPOP, a large LRANGE), the AOF buffer
and the rewrite's copy-on-write pages of the forked child. `spec.redis.maxmemory` sets it
explicitly (it must stay below the limit); without a memory limit there is nothing to derive it from,
and Redis gets no maxmemory (it still never evicts).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from bookgen_operator.core.reconcile import quantity

#: The share of the container's memory limit Redis may fill with data. 20% stays for fragmentation,
#: client buffers and an AOF rewrite; Redis's own advice for a forked rewrite is similar headroom.
MAXMEMORY_FRACTION = Decimal("0.8")
#: The policy of a queue's Redis, always: see the module docstring.
MAXMEMORY_POLICY = "noeviction"


def maxmemory_bytes(limits: Mapping[str, str], override: str = "") -> int | None:
    """The bytes Redis may fill: `override` (a quantity such as 200Mi) when given, else
    MAXMEMORY_FRACTION of `limits["memory"]`, else None (no limit: Redis's own default, unlimited)."""
    if override:
        return _bytes(override)
    limit = limits.get("memory")
    if not limit:
        return None
    return int(_bytes(limit) * MAXMEMORY_FRACTION)


def memory_args(limits: Mapping[str, str], override: str = "") -> list[str]:
    """redis-server's command-line arguments for memory: the policy always, maxmemory when known."""
    amount = maxmemory_bytes(limits, override)
    sized = ["--maxmemory", str(amount)] if amount is not None else []
    return [*sized, "--maxmemory-policy", MAXMEMORY_POLICY]


def _bytes(value: str) -> int:
    number = quantity(value)
    if number is None:
        raise ValueError(f"not a memory quantity: {value!r}")
    return int(number)
