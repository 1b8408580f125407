"""Patches of upstream code, each kept to the versions it was written for.

- kombu_redis.py: kombu's Redis transport (docs/upstream/kombu-redis-restart.md and
  docs/upstream/kombu-corrupt-message.md);
- kombu_full.py: kombu's Redis QoS at maxmemory (docs/upstream/kombu-redis-full.md);
- prefork_pool.py: Celery's prefork pool (docs/upstream/celery-prefork-recycle.md, close to the open
  celery/celery#9588).

Each module names the distributions and versions it was written for (WRITTEN_FOR) and the upstream
functions it replaces or wraps, with the SHA-256 of their source in those versions (UPSTREAM).
tests/unit/test_patch_fingerprints.py recomputes those from the installed packages, so an upgrade that
changes one fails the tests until someone has read the new code. At run time `apply()` checks the
installed versions first: on others it leaves upstream's code alone and says so, loudly (a copy of
5.7.0's code in another kombu could do worse than the bug it works around).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version

log = logging.getLogger(__name__)


class PatchNotApplied(RuntimeWarning):
    """An upstream patch was left out: the installed versions are not those it was written for."""


def installed(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "not installed"


def written_for(patch: str, versions: Mapping[str, str], without_it: str) -> bool:
    """True when every distribution is at the version the patch was written for; otherwise a warning
    (PatchNotApplied, and the log) that says what is installed and what is lost, and False."""
    found = {name: installed(name) for name in versions}
    if found == dict(versions):
        return True
    wanted = ", ".join(f"{name} {v}" for name, v in versions.items())
    have = ", ".join(f"{name} {v}" for name, v in found.items())
    message = (f"bookgen: the {patch} patch is NOT applied: it was written for {wanted}, and {have} is "
               f"installed. Without it {without_it}. Read the upstream change, then update the patch, its "
               f"WRITTEN_FOR and tests/unit/test_patch_fingerprints.py.")
    log.warning("%s", message)
    warnings.warn(message, PatchNotApplied, stacklevel=3)
    return False
