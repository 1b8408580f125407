"""The base class of every BookGen task: argument checking, retries with backoff, dead letters.

Use `@bookgen_task("generate_chapter")` on a function whose first parameter is the bound task.
The task is registered as `bookgen.generate_chapter` and routed by name (see queues.py).

- PermanentError (and arguments that do not fit the task's signature) fail at once.
- A write Redis refuses at maxmemory puts the message back in its queue (not a retry, not a failure).
- Any other exception is retried with the configured backoff, per task type, up to max_retries.
- A task that fails for good is recorded in the dead-letter queue with its full details.
"""

from __future__ import annotations

import inspect
import logging
import time
import traceback as traceback_module
from collections.abc import Callable
from typing import Any, TypeVar

from celery import Task
from celery.exceptions import Ignore, Reject, Retry

from .. import deadletter, rejected  # noqa: F401  (rejected: connects the dead-lettering of rejects)
from ..app import app, bookgen_settings
from ..errors import InvalidInput, PermanentError
from ..queues import queue_for_task, task_name, task_type_of, transport_priority
from ..redis_client import is_redis_full
from ..retry import backoff_delay

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

#: How long a task whose write Redis refused at maxmemory waits before going back to its queue.
REDIS_FULL_PAUSE_SECONDS = 2.0
#: Header carrying the time of the first attempt, so dead letters can say how long a task struggled.
FIRST_SEEN_HEADER = "bookgen_first_seen"

#: Checks run in the worker just before any BookGen task starts; one may raise Ignore to drop the
#: task (acknowledged, no result, no callbacks). The book-job layer registers one to hold chapters
#: of a paused job and to drop those of a cancelled job (jobs/gate.py).
ADMISSION_CHECKS: list[Callable[[Task], None]] = []


class BookGenTask(Task):  # type: ignore[misc]
    abstract = True
    typing = False  # we check arguments ourselves, to fail with InvalidInput instead of TypeError
    Strategy = "bookgen_worker.strategy:guarded"  # malformed messages are dead-lettered, not fatal

    def before_start(self, task_id: str, args: Any, kwargs: Any) -> None:
        for check in ADMISSION_CHECKS:
            check(self)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        signature = self.__dict__.get("_bookgen_signature")
        if signature is None:  # computed once per task and process: inspect.signature is not cheap
            signature = self.__dict__["_bookgen_signature"] = inspect.signature(self.run)
        try:
            signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise InvalidInput(f"{self.name} was called with arguments that do not fit: {exc}") from None
        try:
            return super().__call__(*args, **kwargs)
        except (PermanentError, Retry, Ignore, Reject):
            raise
        except Exception as exc:
            if self.request.called_directly:
                raise
            if is_redis_full(exc):
                raise self._wait_for_room(exc) from exc
            settings = bookgen_settings(self.app)
            policy = settings.retry_for(self.name, task_type_of(self.name))
            retries = int(self.request.retries or 0)
            if retries >= policy.max_retries:
                raise
            countdown = backoff_delay(policy, retries)
            logger.warning(
                "%s[%s] failed (%s: %s); retry %d/%d in %.1fs",
                self.name, self.request.id, type(exc).__name__, exc, retries + 1, policy.max_retries, countdown,
            )
            # Custom headers do not survive a retry by themselves: carry ours forward.
            headers = {
                FIRST_SEEN_HEADER: self._first_seen(),
                deadletter.REPLAYS_HEADER: int(self._header(deadletter.REPLAYS_HEADER) or 0),
            }
            raise self.retry(exc=exc, countdown=countdown, max_retries=policy.max_retries, headers=headers) from exc

    def _wait_for_room(self, exc: BaseException) -> Reject:
        """Redis is full and refused one of this task's own writes (a job's record, a probe's note).
        A retry would publish a new message, which Redis refuses too, and the task would be lost; so
        the message itself goes back to its queue (the requeue is memory-neutral: patches/kombu_full.py)
        and runs again later, not counted as a retry. The pause keeps a worker from spinning on it
        while Redis stays full; workers go on draining the queue meanwhile."""
        logger.warning("%s[%s]: Redis is full (maxmemory), requeueing the task in %.0fs: %s",
                       self.name, self.request.id, REDIS_FULL_PAUSE_SECONDS, exc)
        time.sleep(REDIS_FULL_PAUSE_SECONDS)
        return Reject(str(exc), requeue=True)

    def submit(self, *args: Any, priority: int = 5, **kwargs: Any) -> Any:
        """Send this task with the public priority scale (0..10, 10 = most urgent).

        Celery's own `apply_async(priority=...)` takes the transport's raw value (0 = first on
        Redis); this method is the one place the public scale is translated.
        """
        return self.apply_async(args=args, kwargs=kwargs, priority=transport_priority(priority))

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        settings = bookgen_settings(self.app)
        delivery = self.request.delivery_info or {}
        entry = deadletter.DeadLetter(
            task_id=task_id,
            task_name=self.name,
            args=list(args or ()),
            kwargs=dict(kwargs or {}),
            queue=delivery.get("routing_key") or queue_for_task(self.name),
            transport_priority=delivery.get("priority"),
            exception_type=type(exc).__name__,
            exception_message=str(exc),
            traceback=str(einfo.traceback) if einfo is not None else "".join(traceback_module.format_exception(exc)),
            attempts=int(self.request.retries or 0) + 1,
            first_seen=self._first_seen(),
            failed_at=deadletter.now(),
            replays=int(self._header(deadletter.REPLAYS_HEADER) or 0),
        )
        try:
            deadletter.record(settings, entry)
        except Exception:  # the failure itself must still be reported even if Redis is gone
            logger.exception("could not record %s[%s] in the dead-letter queue", self.name, task_id)
        logger.error("%s[%s] dead-lettered after %d attempt(s): %s", self.name, task_id, entry.attempts, exc)

    def _first_seen(self) -> float:
        value = self._header(FIRST_SEEN_HEADER)
        return float(value) if value else time.time()

    def _header(self, name: str) -> Any:
        """A custom message header: Celery exposes them as request attributes, or in `headers`."""
        return (self.request.headers or {}).get(name) or getattr(self.request, name, None)


def bookgen_task(short_name: str, **options: Any) -> Callable[[F], BookGenTask]:
    """Register a bound BookGen task named `bookgen.<short_name>`."""

    def decorate(function: F) -> BookGenTask:
        return app.task(  # type: ignore[no-any-return]
            name=task_name(short_name), bind=True, base=BookGenTask, **options
        )(function)

    return decorate
