"""spec.redis.maxmemory: how much data the managed Redis may hold before it refuses new writes.

Checked here so a wrong value is a one-line SpecError, not a Redis that will not start or that the
kernel kills: it must be a whole number of bytes with a binary or decimal suffix (no millibytes), at
least 1Mi (Redis warns that less is unusable), and below the container's memory limit (at or above
it, the kernel's OOM killer ends Redis before Redis refuses a write).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from bookgen_operator.core.reconcile import quantity
from bookgen_operator.core.spec.model import SpecError
from bookgen_operator.core.spec.reader import Reader

#: The CRD's pattern for spec.redis.maxmemory.
MAXMEMORY_PATTERN = re.compile(r"^$|^[0-9]+(Ki|Mi|Gi|Ti|k|M|G|T)?$")
MIN_MAXMEMORY = 2**20


def read_maxmemory(r: Reader, limits: Mapping[str, str], *, managed: bool) -> str:
    value = r.string("maxmemory", "", max_len=32)
    if not value:
        return ""
    path = r.at("maxmemory")
    if not managed:
        raise SpecError(f"{path}: redis.maxmemory sizes the managed Redis; "
                        "an external Redis's configuration is not the operator's")
    if not MAXMEMORY_PATTERN.match(value):
        raise SpecError(f"{path} must be a size such as 200Mi or 1Gi (got {value!r})")
    amount = quantity(value)
    assert amount is not None  # the pattern admits only quantities
    if amount < MIN_MAXMEMORY:
        raise SpecError(f"{path} must be at least 1Mi (got {value})")
    limit = quantity(limits["memory"]) if limits.get("memory") else None
    if limit is not None and amount >= limit:
        raise SpecError(
            f"{path} ({value}) must be below resources.limits.memory ({limits['memory']}): "
            "Redis needs room beyond its data, or the kernel kills it before it refuses a write"
        )
    return value
