"""The dead-letter queue: tasks that failed for good, kept in Redis with everything needed to replay.

Entries live in the Redis hash `failed_tasks` (task id -> JSON record). Archived entries move to
`failed_tasks:archive`. Replaying sends the task again with its original queue and priority.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from .config import Settings
from .queues import DEAD_LETTER_KEY
from .redis_client import get_redis, prefixed

if TYPE_CHECKING:
    from celery import Celery

ARCHIVE_SUFFIX = ":archive"


@dataclass(frozen=True)
class DeadLetter:
    task_id: str
    task_name: str
    args: Sequence[Any]
    kwargs: Mapping[str, Any]
    queue: str
    transport_priority: int | None
    exception_type: str
    exception_message: str
    traceback: str
    attempts: int
    first_seen: float
    failed_at: float
    replays: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), default=repr)

    @classmethod
    def from_json(cls, raw: bytes | str) -> DeadLetter:
        data = json.loads(raw)
        return cls(**data)


def _key(settings: Settings, archive: bool = False) -> str:
    return prefixed(settings, DEAD_LETTER_KEY + (ARCHIVE_SUFFIX if archive else ""))


def record(settings: Settings, entry: DeadLetter) -> None:
    added = get_redis(settings).hset(_key(settings), entry.task_id, entry.to_json())
    if added:  # a counter of arrivals: the queue's size is a gauge that replays and purges also move
        from .metrics.signals import count_dead_letter

        count_dead_letter(settings, entry.task_name, entry.queue)


def size(settings: Settings) -> int:
    return int(get_redis(settings).hlen(_key(settings)))


def entries(settings: Settings, archive: bool = False) -> list[DeadLetter]:
    raw = get_redis(settings).hvals(_key(settings, archive))
    return sorted((DeadLetter.from_json(item) for item in raw), key=lambda e: e.failed_at)


def get(settings: Settings, task_id: str) -> DeadLetter | None:
    raw = get_redis(settings).hget(_key(settings), task_id)
    return DeadLetter.from_json(raw) if raw else None


def remove(settings: Settings, task_ids: Iterable[str]) -> int:
    ids = list(task_ids)
    return int(get_redis(settings).hdel(_key(settings), *ids)) if ids else 0


def purge(settings: Settings) -> int:
    client = get_redis(settings)
    count = int(client.hlen(_key(settings)))
    client.delete(_key(settings))
    return count


def archive(settings: Settings, task_ids: Iterable[str]) -> int:
    """Move entries to the archive hash atomically, so none is lost or duplicated."""
    client = get_redis(settings)
    moved = 0
    for task_id in task_ids:
        raw = client.hget(_key(settings), task_id)
        if raw is None:
            continue
        with client.pipeline(transaction=True) as pipe:
            pipe.hset(_key(settings, archive=True), task_id, raw)
            pipe.hdel(_key(settings), task_id)
            pipe.execute()
        moved += 1
    return moved


def now() -> float:
    return time.time()


#: Header telling a replayed task how many times it was replayed, so a new dead letter keeps count.
REPLAYS_HEADER = "bookgen_replays"


def replay(app: Celery, settings: Settings, task_id: str) -> str:
    """Send a dead-lettered task again, with its original name, arguments, queue and priority.

    The entry leaves the dead-letter queue only once the new message is on the broker, so a failed
    send loses nothing. Returns the id of the new task.
    """
    entry = get(settings, task_id)
    if entry is None:
        raise LookupError(f"no dead-letter entry with task id {task_id!r} (see `bookgen dlq list`)")
    result = app.send_task(
        entry.task_name,
        args=list(entry.args),
        kwargs=dict(entry.kwargs),
        queue=entry.queue,
        routing_key=entry.queue,
        priority=entry.transport_priority,
        headers={REPLAYS_HEADER: entry.replays + 1},
    )
    remove(settings, [task_id])
    return str(result.id)
