"""Error classes that decide what happens to a failing task.

TransientError: worth retrying (network blips, a busy upstream). PermanentError: bad input or a
state retrying cannot fix; it goes straight to the dead-letter queue with its message.
"""

from __future__ import annotations


class BookGenError(Exception):
    """Base of the errors BookGen raises on purpose, with a message meant for a user."""


class TransientError(BookGenError):
    """Retry with backoff; after the last retry the task is dead-lettered."""


class PermanentError(BookGenError):
    """Do not retry: the input is wrong or the work cannot succeed as asked."""


class InvalidInput(PermanentError):
    """A task or job argument is malformed (empty subject, negative word count, ...)."""


class RedisUnavailable(BookGenError):
    """Redis cannot be reached; the message names the (redacted) URL."""


class RedisFull(BookGenError):
    """Redis refused a write because it holds its `maxmemory` (it never evicts: a queue's keys are tasks).
    Nothing already queued is lost; writes succeed again once workers drain the queue."""

    def __init__(self, refused: str = "the write") -> None:
        super().__init__(
            f"the queue's Redis is full (maxmemory reached): it refused {refused} (nothing already queued is "
            "lost); try again when jobs drain, or raise the Redis memory limit (spec.redis.resources.limits.memory)"
        )
