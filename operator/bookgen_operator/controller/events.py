"""Kubernetes Events for significant actions (created/repaired children, invalid spec, missing Secret).

Posted through kopf's event queue (asynchronous, failures tolerated by kopf), so a cluster that
refuses Events never blocks a reconcile. Messages never contain Secret values: callers pass names.
"""

from __future__ import annotations

import logging
from typing import cast

import kopf

from bookgen_operator.core.objects import Body

log = logging.getLogger(__name__)


def _post(owner: Body, type_: str, reason: str, message: str) -> None:
    try:
        # kopf walks any mapping here (its own code casts); its signature names only its Body view.
        kopf.event(cast(kopf.Body, dict(owner)), type=type_, reason=reason, message=message[:1024])
    except (LookupError, RuntimeError):  # outside kopf's handler context (e.g. unit tests): log only
        log.info("event %s %s: %s", type_, reason, message)


def normal(owner: Body, reason: str, message: str) -> None:
    _post(owner, "Normal", reason, message)


def warning(owner: Body, reason: str, message: str) -> None:
    _post(owner, "Warning", reason, message)
