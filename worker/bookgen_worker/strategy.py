"""A guard in front of Celery's default task strategy: malformed messages are rejected, not fatal.

Celery's default strategy unpacks the body without checking its shape; a body that is not
`[args, kwargs, embed]` raises inside the consumer, which restarts its connection, restores the
message and meets it again: a poison message. Raising InvalidTaskError instead makes the consumer
reject it, and the `task_rejected` signal records it in the dead-letter queue (see rejected.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery.exceptions import InvalidTaskError
from celery.worker.strategy import default


def body_problem(payload: Any) -> str | None:
    """What is wrong with a decoded task body, or None when it has a shape Celery can run."""
    if isinstance(payload, dict):
        return None if "args" in payload else "a task body must be [args, kwargs, options]"
    if not isinstance(payload, list | tuple) or len(payload) != 3:
        return "a task body must be [args, kwargs, options]"
    args, kwargs, embed = payload
    if not isinstance(args, list | tuple):
        return f"task arguments must be a list (got {type(args).__name__})"
    if not isinstance(kwargs, dict):
        return f"task keyword arguments must be an object (got {type(kwargs).__name__})"
    if not isinstance(embed, dict | None):
        return "task options must be an object"
    return None


def guarded(task: Any, app: Any, consumer: Any, **options: Any) -> Callable[..., Any]:
    handle = default(task, app, consumer, **options)

    def task_message_handler(message: Any, body: Any, ack: Any, reject: Any, callbacks: Any, **kwargs: Any) -> Any:
        try:
            payload = message.payload if body is None else body
        except Exception as exc:  # undecodable: Celery would log it and ack it, losing it
            raise InvalidTaskError(f"the task body cannot be decoded: {exc}") from None
        problem = body_problem(payload)
        if problem is not None:
            raise InvalidTaskError(problem)
        return handle(message, body, ack, reject, callbacks, **kwargs)

    return task_message_handler
