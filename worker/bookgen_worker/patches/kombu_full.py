"""A patch of kombu's Redis QoS, so a worker keeps its tasks and its life when Redis is full.

Written for kombu 5.7.0 (WRITTEN_FOR), checked like kombu_redis.py (UPSTREAM, the fingerprint test).

The bug. A queue's Redis runs with `maxmemory-policy noeviction` (it must never drop a task), so at
maxmemory it refuses, with an OOM error, every command that may grow memory, and (Redis >= 7.0)
*every* command queued inside MULTI/EXEC, deletes included. kombu keeps its delivery bookkeeping in
MULTI/EXEC transactions:

1. `QoS.append`, right after BRPOP took a message off its list, records it in `unacked` (ZADD + HSET).
   Refused, the OOM error escapes the worker's event loop: "Unrecoverable error", the worker exits,
   and the message, no longer in its list and never in `unacked`, is lost. Seen with a real worker.
2. `QoS.ack` (ZREM + HDEL) is refused: a task that finished stays in `unacked` and runs again after
   the visibility timeout, and the error again escapes the event loop.
3. `QoS.restore_by_tag` (a reject with requeue, a restore at shutdown or after the visibility
   timeout) is refused: the message stays in `unacked` until a later restore gets through.
4. A worker starting at a full Redis exits: declaring its queues counts them (`Channel._size`, LLENs
   inside MULTI) and binds them (`Channel._queue_bind`, SADDs of members producers already added).

None of these writes adds data (the reads of 4 need no MULTI at all): append re-records a message
BRPOP has just removed, ack deletes, restore moves a message from `unacked` back to its list. So when
Redis answers OOM, the patch does the same writes, atomically still, in a Lua script flagged
`allow-oom` (Redis >= 7.0: "the script can call any Redis command, including commands that aren't
usually allowed in this state"). Without the OOM the upstream code runs unchanged. On a Redis older than
7.0 the script cannot run: the OOM error is raised as before, with a log line saying why.
"""

from __future__ import annotations

import logging
import time
from types import MappingProxyType
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import dumps, loads
from redis.exceptions import OutOfMemoryError, ResponseError

from bookgen_worker.patches import written_for

WRITTEN_FOR = MappingProxyType({"kombu": "5.7.0"})
UPSTREAM = MappingProxyType({
    "kombu.transport.redis:QoS.append": "deb496d226e23155c5a1dfe588c91b25d26338404b201ca9d49e89c266b878be",
    "kombu.transport.redis:QoS.ack": "e327206e27ae8803262812b349d9b2abff756c8ede52a5662f97f7db05ee4064",
    "kombu.transport.redis:QoS.reject": "ad20c6225519b181a72b6c6b231d0901344c61fd408cb08b6cdd313bc2f79b45",
    "kombu.transport.redis:QoS.restore_by_tag": "bd61cd6c1dd3a543daec30c70399f70aa18e4b6dbf72cd2062ca974e41657323",
    "kombu.transport.redis:Channel._do_restore_message":
        "18ea135a1cd1bd42df78cd57748f3ca623489daa5ce882260252866801ed6e62",
    "kombu.transport.redis:Channel._size": "f2b9c57a7dd65853c2af2bc79ecff856f665ec1935a2aa04a0689ea6a49b30bc",
    "kombu.transport.redis:Channel._queue_bind":
        "7cd473485dea3adff56379a7b5d5ea32d20056b0a7ef5e54adfd1910e445652f",
    "kombu.transport.redis:QoS.restore_visible": "bb1fc4c56b7af71ffc8e635b40e5e1a40a00725cb2833c944ac1f7874f458e67",
})

logger = logging.getLogger(__name__)
#: The fallback is logged at most this often per kind of write: a full Redis may last for thousands of tasks.
LOG_EVERY_SECONDS = 60.0
_last_warned: dict[str, float] = {}
#: A producer binds too (`bookgen submit`): its one-line error must stay the only line it prints.
BIND_LOG_LEVEL = logging.INFO
_APPLIED = "_bookgen_full_patched"

#: KEYS: unacked_index, unacked. ARGV: tag, score, payload. What QoS.append writes.
RECORD = """#!lua flags=allow-oom
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return 1
"""
#: KEYS: unacked_index, unacked. ARGV: tag. What QoS.ack (and a reject without requeue) writes.
FORGET = """#!lua flags=allow-oom
redis.call('ZREM', KEYS[1], ARGV[1])
return redis.call('HDEL', KEYS[2], ARGV[1])
"""
#: KEYS: unacked_index, unacked, then the lists to push to. ARGV: tag, leftmost ("1"/"0"), then the payloads.
#: Pushes only if the message is still in `unacked` (another restore may have moved it meanwhile).
RESTORE = """#!lua flags=allow-oom
redis.call('ZREM', KEYS[1], ARGV[1])
if redis.call('HDEL', KEYS[2], ARGV[1]) == 0 then return 0 end
local push = ARGV[2] == '1' and 'LPUSH' or 'RPUSH'
for i = 3, #KEYS do redis.call(push, KEYS[i], ARGV[i]) end
return 1
"""

#: KEYS: the exchange's binding table, its permanent copy. ARGV: the binding. What Channel._queue_bind
#: writes for a queue without expiry: a member that is nearly always there already (producers bind too).
BIND = """#!lua flags=allow-oom
redis.call('SADD', KEYS[1], ARGV[1])
return redis.call('SADD', KEYS[2], ARGV[1])
"""


def run_allowing_oom(client: Any, script: str, keys: list[str], args: list[Any], numkeys: int | None = None) -> Any:
    """EVAL `script` with kombu's global key prefix on `keys` (kombu prefixes no EVAL itself); `numkeys`
    when some of `args` are keys already prefixed."""
    prefix = getattr(client, "global_keyprefix", "") or ""
    count = len(keys) if numkeys is None else numkeys
    return client.execute_command("EVAL", script, count, *(prefix + k for k in keys), *args)


def _fallback(what: str, exc: OutOfMemoryError, write: Any, level: int = logging.WARNING) -> Any:
    try:
        result = write()
    except ResponseError as failed:  # Redis < 7.0 knows no script flags
        logger.error("Redis is full and refused to %s, and cannot run allow-oom scripts (Redis >= 7.0): %s",
                     what, failed)
        raise exc from None
    now = time.monotonic()
    if now - _last_warned.get(what, -LOG_EVERY_SECONDS) >= LOG_EVERY_SECONDS:  # one line a minute, not per task
        _last_warned[what] = now
        logger.log(level, "Redis is full (maxmemory): %s went through as a memory-neutral script "
                   "(said once a minute while it lasts)", what)
    return result


class _Pushes:
    """Stands in for the pipeline kombu's `_do_restore_message` pushes to: collects (command, list, payload)."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str, str]] = []

    def lpush(self, key: str, value: str) -> None:
        self.items.append(("LPUSH", key, value))

    def rpush(self, key: str, value: str) -> None:
        self.items.append(("RPUSH", key, value))


def apply() -> bool:
    """Patch kombu's Redis QoS in this process; idempotent. False (and a loud warning) on another kombu."""
    qos_cls: Any = kombu_redis.QoS
    if getattr(qos_cls, _APPLIED, False):
        return True
    if not written_for("kombu Redis full", WRITTEN_FOR,
                       "a worker exits, and loses the message it just took, when Redis is at maxmemory"):
        return False
    original_append = qos_cls.append
    original_ack = qos_cls.ack
    original_reject = qos_cls.reject
    original_restore_by_tag = qos_cls.restore_by_tag

    def append(self: Any, message: Any, delivery_tag: str) -> Any:
        try:
            return original_append(self, message, delivery_tag)
        except OutOfMemoryError as exc:
            delivery = message.delivery_info
            payload = dumps([message._raw, delivery["exchange"], delivery["routing_key"]])
            with self.channel.conn_or_acquire() as client:
                _fallback("record a delivered message", exc, lambda: run_allowing_oom(
                    client, RECORD, [self.unacked_index_key, self.unacked_key], [delivery_tag, time.time(), payload]))
            # What upstream's append does after its pipeline: the virtual QoS's own bookkeeping.
            virtual.QoS.append(self, message, delivery_tag)
            return None

    def forget(self: Any, delivery_tag: str, exc: OutOfMemoryError) -> None:
        with self.channel.conn_or_acquire() as client:
            _fallback("acknowledge a message", exc, lambda: run_allowing_oom(
                client, FORGET, [self.unacked_index_key, self.unacked_key], [delivery_tag]))
        virtual.QoS.ack(self, delivery_tag)

    def ack(self: Any, delivery_tag: str) -> Any:
        try:
            return original_ack(self, delivery_tag)
        except OutOfMemoryError as exc:
            return forget(self, delivery_tag, exc)

    def reject(self: Any, delivery_tag: str, requeue: bool = False) -> Any:
        try:
            return original_reject(self, delivery_tag, requeue)
        except OutOfMemoryError as exc:
            if requeue:
                raise  # restore_by_tag, below, has already tried its own fallback
            return forget(self, delivery_tag, exc)

    def restore_by_tag(self: Any, tag: str, client: Any = None, leftmost: bool = False) -> Any:
        try:
            return original_restore_by_tag(self, tag, client, leftmost)
        except OutOfMemoryError as exc:
            with self.channel.conn_or_acquire(client) as conn:
                raw = conn.hget(self.unacked_key, tag)
                pushes = _Pushes()
                if raw:
                    payload, exchange, routing_key = loads(bytes_to_str(raw))
                    self.channel._do_restore_message(payload, exchange, routing_key, pushes, leftmost)
                keys = [self.unacked_index_key, self.unacked_key, *(key for _, key, _ in pushes.items)]
                args = [tag, "1" if leftmost else "0", *(value for _, _, value in pushes.items)]
                _fallback("requeue a message", exc, lambda: run_allowing_oom(conn, RESTORE, keys, args))
            return None

    original_restore_visible = qos_cls.restore_visible

    def restore_visible(self: Any, *args: Any, **kwargs: Any) -> Any:
        # Its lock is a SET, refused at maxmemory: skip this sweep (a timer runs it again), do not
        # let the error reach the event loop. What it would restore stays in `unacked` meanwhile.
        try:
            return original_restore_visible(self, *args, **kwargs)
        except OutOfMemoryError as exc:
            logger.warning("Redis is full (maxmemory): restoring overdue messages waits for the next sweep (%s)", exc)
            return None

    channel_cls: Any = kombu_redis.Channel
    original_size = channel_cls._size
    original_queue_bind = channel_cls._queue_bind

    def _size(self: Any, queue: str) -> int:
        # Declaring a queue counts it with LLENs inside MULTI, which a full Redis refuses: a worker
        # starting then (a restart, the autoscaler adding one for the backlog) would exit at once.
        try:
            return int(original_size(self, queue))
        except OutOfMemoryError:
            with self.conn_or_acquire() as client:
                pipe = client.pipeline(transaction=False)  # reads outside MULTI are always served
                for pri in self.priority_steps:
                    pipe.llen(self._q_for_pri(queue, pri))
                return sum(int(size) for size in pipe.execute())

    def _queue_bind(self: Any, exchange: str, routing_key: str, pattern: str, queue: str) -> Any:
        try:
            return original_queue_bind(self, exchange, routing_key, pattern, queue)
        except OutOfMemoryError as exc:
            member = self.sep.join([routing_key or "", pattern or "", queue or ""])
            table = self.keyprefix_queue % (exchange,)
            if queue in self._expires:  # e.g. the worker's pidbox: kombu's own script, allowed at OOM
                script = f"#!lua flags=allow-oom\n{kombu_redis.REFRESH_BINDING}"
                # kombu's deadline key is prefixed already (its EVALSHA prefixes the first key only).
                keys, args = [table], [self._script_binding_deadlines, member, exchange, self._binding_ttl(queue)]
                with self.conn_or_acquire() as client:
                    _fallback("bind a queue", exc, lambda: run_allowing_oom(client, script, keys, args, numkeys=2),
                              BIND_LOG_LEVEL)
                return None
            keys = [table, self.keyprefix_binding_permanent % (exchange,)]
            with self.conn_or_acquire() as client:
                _fallback("bind a queue", exc, lambda: run_allowing_oom(client, BIND, keys, [member]), BIND_LOG_LEVEL)
            return None

    channel_cls._size = _size
    channel_cls._queue_bind = _queue_bind
    qos_cls.restore_visible = restore_visible
    qos_cls.append = append
    qos_cls.ack = ack
    qos_cls.reject = reject
    qos_cls.restore_by_tag = restore_by_tag
    setattr(qos_cls, _APPLIED, True)
    return True
