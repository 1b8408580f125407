"""Kubernetes Events for significant actions (created/repaired children, invalid spec, missing Secret).

Posted through kopf's event queue (asynchronous, failures tolerated by kopf), so a cluster that
refuses Events never blocks a reconcile. Messages never contain Secret values: callers pass names.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kopf

log = logging.getLogger(__name__)


def _post(owner: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
    try:
        kopf.event(dict(owner), type=type_, reason=reason, message=message[:1024])
    except (LookupError, RuntimeError):  # outside kopf's handler context (e.g. unit tests): log only
        log.info("event %s %s: %s", type_, reason, message)


def normal(owner: Mapping[str, Any], reason: str, message: str) -> None:
    _post(owner, "Normal", reason, message)


def warning(owner: Mapping[str, Any], reason: str, message: str) -> None:
    _post(owner, "Warning", reason, message)
