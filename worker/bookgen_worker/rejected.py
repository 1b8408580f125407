"""Messages a worker cannot run at all (unknown task name, malformed payload) go to the dead letters.

Celery's consumer only logs such messages and drops them; a user would never learn why their task
vanished. Connected through Celery signals, so no part of Celery is subclassed.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import signals

from . import deadletter
from .app import app, bookgen_settings
from .patches.kombu_redis import CORRUPT_HEADER

logger = logging.getLogger(__name__)


def _body_arguments(message: Any) -> tuple[list[Any], dict[str, Any]]:
    """Arguments of a protocol-2 body `[args, kwargs, embed]`, or nothing when it is malformed."""
    try:
        body = message.decode()
    except Exception:
        return [], {}
    if isinstance(body, list | tuple) and len(body) >= 2 and isinstance(body[0], list) and isinstance(body[1], dict):
        return list(body[0]), dict(body[1])
    return [], {"payload": body}


def dead_letter_for(
    message: Any, exc: BaseException | None, reason: str, name: str | None = None
) -> deadletter.DeadLetter:
    headers = getattr(message, "headers", None) or {}
    delivery = getattr(message, "delivery_info", None) or {}
    properties = getattr(message, "properties", None) or {}
    args, kwargs = _body_arguments(message)
    task_name = name or str(headers.get("task") or "<no task name>")
    now = deadletter.now()
    return deadletter.DeadLetter(
        task_id=str(headers.get("id") or properties.get("correlation_id") or f"rejected-{now}"),
        task_name=task_name,
        args=args,
        kwargs=kwargs,
        queue=str(delivery.get("routing_key") or ""),
        transport_priority=properties.get("priority", delivery.get("priority")),
        exception_type=type(exc).__name__ if exc is not None else "MalformedMessage",
        exception_message=reason,
        traceback="",
        attempts=0,
        first_seen=now,
        failed_at=now,
        replays=_replays(headers),
    )


def _replays(headers: Any) -> int:
    """How often the message was replayed from the dead letters (the header replay() sets)."""
    try:
        return int(headers.get(deadletter.REPLAYS_HEADER) or 0)
    except (TypeError, ValueError):
        return 0


def corrupt_dead_letter(message: Any) -> deadletter.DeadLetter:
    """The entry for bytes in a queue that were no message envelope at all (see patches/kombu_redis.py)."""
    delivery = getattr(message, "delivery_info", None) or {}
    try:
        body = message.decode()
    except Exception:
        body = {}
    body = body if isinstance(body, dict) else {}
    queue = str(delivery.get("routing_key") or "")
    now = deadletter.now()
    return deadletter.DeadLetter(
        task_id=str(getattr(message, "delivery_tag", None) or f"corrupt-{now}"),
        task_name="<corrupt message envelope>",
        args=[],
        kwargs={},
        queue=queue,
        transport_priority=None,
        exception_type="CorruptEnvelope",
        exception_message=f"bytes in queue {queue!r} are not a message envelope: {message.headers[CORRUPT_HEADER]}",
        traceback="",
        attempts=0,
        first_seen=now,
        failed_at=now,
        extra={"raw": body.get("raw", ""), "raw_base64": body.get("raw_base64", "")},
    )


def _record(entry: deadletter.DeadLetter) -> None:
    try:
        deadletter.record(bookgen_settings(app), entry)
    except Exception:
        logger.exception("could not dead-letter rejected message %s", entry.task_id)


def on_unknown_task(sender: Any = None, message: Any = None, exc: BaseException | None = None,
                    name: str | None = None, **_: Any) -> None:
    reason = f"no task named {name!r} is registered on this worker (check the name, or the worker's version)"
    _record(dead_letter_for(message, exc, reason, name=name))


def on_rejected(sender: Any = None, message: Any = None, exc: BaseException | None = None, **_: Any) -> None:
    if CORRUPT_HEADER in (getattr(message, "headers", None) or {}):
        _record(corrupt_dead_letter(message))
        return
    reason = f"malformed task message: {exc}" if exc is not None else "message is not a Celery task"
    _record(dead_letter_for(message, exc, reason))


signals.task_unknown.connect(on_unknown_task)
signals.task_rejected.connect(on_rejected)
