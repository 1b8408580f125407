"""The platform interface the autoscaler drives: read a pool's replicas and busy workers, scale it.

One decision core, two actuators (docs/operator.md, "The code"): only "make N workers of pool P exist" differs
between Kubernetes and the local runtime.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class PlatformError(Exception):
    """The platform cannot read or scale a pool right now (e.g. its Deployment does not exist yet)."""


class BusyUnknown(PlatformError):
    """The platform cannot tell which workers are busy: the caller must treat every worker as busy."""


class Platform(Protocol):
    async def replicas(self, pool: str) -> int: ...

    async def busy_workers(self, pool: str) -> list[str]:
        """Pod/worker names of the pool running at least one task (raise BusyUnknown if unknown)."""
        ...

    async def scale(self, pool: str, replicas: int, busy: Sequence[str]) -> None:
        """Make `replicas` workers exist, removing only workers not named in `busy`."""
        ...
