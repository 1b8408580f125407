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
