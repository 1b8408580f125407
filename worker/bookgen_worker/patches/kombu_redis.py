"""A minimal patch of kombu's Redis transport, so a Redis restart no longer kills busy workers.

Written for kombu 5.7.0 (WRITTEN_FOR; on another version it is not applied, and says so). The two bugs
are reported in docs/upstream/kombu-redis-restart.md and docs/upstream/kombu-corrupt-message.md;
tests/unit/test_patch_fingerprints.py checks that the functions listed in UPSTREAM are still the code
this was written against.

The bug (kombu 5.7.0, the newest release when found):

1. A worker with a free pool slot is blocked in BRPOP. Redis goes away; Celery's consumer calls
   `Connection.collect()`, which tries to close the default channel. `Channel.close()` first
   reads the pending BRPOP reply, which raises ConnectionError, so the channel stays open; the
   error is swallowed, and `collect()` then drops the transport's reference to its connection
   (`transport.client = None`).
2. Celery then calls `connection.close()`, which closes the same channel again. This time it gets
   past BRPOP, disconnects its pools and calls `QoS.restore_unacked_once()`, which needs a new
   pool, built by `Channel._connparams()` from `self.connection.client.hostname`: the transport's
   client is None, so AttributeError, which is not a connection error, escapes every handler:
   "Unrecoverable error", and the worker exits. (With one pool slot and a running task, the
   worker is not in BRPOP, so the first close succeeds and the worker survives.)
3. Either way, the task that was running finishes after the reconnect, and its acknowledgement
   goes through the old channel, which needs the same `_connparams()`: it fails, the message
   stays in the `unacked` hash, and it is delivered again after the visibility timeout.

The patch: a channel remembers the connection it was opened for, and `_connparams()` uses it when
the transport has forgotten it, so the close and the late acknowledgement both reach Redis. And a
channel closed while the worker goes on (a lost connection, a consumer restart) no longer requeues
the messages whose tasks are still running in this worker: they are acknowledged when they finish
(requeueing them, as kombu does whenever Redis answers at that moment, runs them twice). At
shutdown, and for messages not yet running, kombu's restore is unchanged.

Second bug, same module: whatever BRPOP pops is passed to `loads()` and then used as a kombu envelope
without a check, inside the worker's event loop. `LPUSH content_generation 'not json {{'` makes the
worker exit (JSONDecodeError), `42` too (TypeError), and a JSON object without `properties` raises
KeyError and is lost. The patched `_brpop_read` turns anything that is not an envelope into one that
carries the raw bytes and the problem (`corrupt_envelope`), which Celery's consumer rejects as "not a
task message"; the `task_rejected` handler (rejected.py) then dead-letters it with its raw bytes.

Third, a cost rather than a bug: every `conn_or_acquire()` without a client (storing a delivered
message in `unacked`, every acknowledgement, restores) builds a new `redis.Redis` on the channel's
pool, and redis-py 8 copies its ~170 response callbacks into a case-insensitive dict for each one:
about 0.1 ms of the worker's main process, twice per task, in the event loop that also feeds the
pool (cProfile of bench.throughput; `timeit` of `redis.Redis(connection_pool=pool)`: 0.11 ms). The
patched channel keeps one such client per pool (a client holds no connection of its own: each
command and pipeline takes one from the pool, as before) and builds a new one when kombu replaces
the pool (after a fork, on reconnect).
"""

from __future__ import annotations

import base64
import json
import uuid
from queue import Empty
from types import MappingProxyType
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.utils.encoding import bytes_to_str

from bookgen_worker.patches import written_for

#: The distributions and versions this patch was written for.
WRITTEN_FOR = MappingProxyType({"kombu": "5.7.0"})
#: The upstream functions replaced (_brpop_read) or wrapped (the others): SHA-256 of their source in
#: kombu 5.7.0 (tests/unit/test_patch_fingerprints.py recomputes them from the installed kombu).
UPSTREAM = MappingProxyType({
    "kombu.transport.redis:Channel.__init__": "15f95cf6a70ba307876950e79f2e06530b9c723d750b7c0c5b99c5b5c61cf2a1",
    "kombu.transport.redis:Channel._connparams": "feff147a3489dd2b31b1b9664b13c969b25909550ceb1b9caa2b89060f6c98f7",
    "kombu.transport.redis:Channel._brpop_read": "dfd713e8c65cd60493d4471ec6e9f2d5f7365f7dddace4f8333094115cbce64d",
    "kombu.transport.redis:Channel._create_client": "6b81dc416d4e243ce27c3d90f1e47e9f06d7f2b1631a5e396595918486d2892b",
    "kombu.transport.redis:QoS.restore_unacked": "acdb4774cc2c198c78edc925dac0f103f1cf2b051b7f0425b7d8f5d1f20dc386",
})

#: Header of a synthesised envelope: what was wrong with the bytes found in the queue.
CORRUPT_HEADER = "bookgen_corrupt_envelope"

_APPLIED = "_bookgen_patched"


def running_delivery_tags() -> set[str]:
    """Delivery tags of the tasks this worker is executing and will acknowledge itself: empty outside
    a worker, and once the worker is shutting down (then kombu's restore-everything is right)."""
    from celery.worker import state

    if state.should_stop not in (None, False) or state.should_terminate not in (None, False):
        return set()
    tags = set()
    for request in list(state.active_requests):
        message = getattr(request, "message", None)
        tag = getattr(message, "delivery_tag", None)
        if tag is not None:
            tags.add(tag)
    return tags


def envelope_problem(payload: Any) -> str | None:
    """What keeps a decoded queue item from being a kombu envelope, or None when it is one."""
    if not isinstance(payload, dict):
        return f"a message envelope must be a JSON object (got {type(payload).__name__})"
    properties = payload.get("properties")
    if not isinstance(properties, dict):
        return "the message envelope has no 'properties' object"
    if "delivery_tag" not in properties:
        return "the message envelope has no delivery_tag"
    info = properties.get("delivery_info")
    if not isinstance(info, dict) or "exchange" not in info or "routing_key" not in info:
        return "the message envelope has no delivery_info with exchange and routing_key"
    if not isinstance(payload.get("headers", {}), dict | None):
        return "the message envelope's headers are not an object"
    return None


def decode_item(raw: bytes | str, queue: str) -> dict[str, Any]:
    """The envelope a queue item holds, or a stand-in envelope carrying the raw bytes when it holds none."""
    try:
        payload = json.loads(bytes_to_str(raw))
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        return corrupt_envelope(raw, queue, f"the message is not JSON ({exc})")
    problem = envelope_problem(payload)
    return payload if problem is None else corrupt_envelope(raw, queue, problem)


def corrupt_envelope(raw: bytes | str, queue: str, problem: str) -> dict[str, Any]:
    data = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogateescape")
    body = {
        "raw": data.decode("utf-8", "replace"),
        "raw_base64": base64.b64encode(data).decode("ascii"),
        "problem": problem,
    }
    return {
        "body": json.dumps(body),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {CORRUPT_HEADER: problem},
        "properties": {
            "delivery_tag": f"corrupt-{uuid.uuid4()}",
            "delivery_info": {"exchange": queue, "routing_key": queue},
            "delivery_mode": 2,
            "priority": 0,
        },
    }


def _brpop_read(self: Any, **options: Any) -> bool:
    """kombu 5.7.0's Channel._brpop_read, with the popped item decoded by `decode_item`."""
    try:
        try:
            dest__item = self.client.parse_response(self.client.connection, "BRPOP", **options)
        except self.connection_errors:
            # if there's a ConnectionError, disconnect so the next iteration will reconnect automatically.
            self.client.connection.disconnect()
            raise
        if dest__item:
            dest, item = dest__item
            dest = bytes_to_str(dest).rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(dest)
            self.connection._deliver(decode_item(item, dest), dest)
            return True
        raise Empty()
    finally:
        self._in_poll = None
        flush = getattr(self, "_flush_brpop_reauth", None)
        if flush is not None:
            flush()


def apply() -> bool:
    """Patch kombu's Redis Channel and QoS in this process; idempotent. False (and a loud warning) when
    the installed kombu is not the one this was written for: then kombu's own code runs."""
    channel_cls: Any = kombu_redis.Channel
    qos_cls: Any = kombu_redis.QoS
    if getattr(channel_cls, _APPLIED, False):
        return True
    if not written_for("kombu Redis transport", WRITTEN_FOR,
                       "a Redis restart can kill a worker with a free slot and lose late acknowledgements, and "
                       "bytes in a queue that are no message stop the worker (docs/upstream/kombu-*.md)"):
        return False
    original_init = channel_cls.__init__
    original_connparams = channel_cls._connparams
    original_restore = qos_cls.restore_unacked
    original_create_client = channel_cls._create_client

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        transport = args[0] if args else kwargs.get("connection")
        # Saved before anything else: kombu's __init__ itself may build a pool.
        self._bookgen_conninfo = getattr(transport, "client", None)
        original_init(self, *args, **kwargs)

    def _connparams(self: Any, asynchronous: bool = False) -> Any:
        transport = self.connection
        saved = getattr(self, "_bookgen_conninfo", None)
        if transport is None or transport.client is not None or saved is None:
            return original_connparams(self, asynchronous=asynchronous)
        transport.client = saved  # only for the duration of this call: the transport stays closed
        try:
            return original_connparams(self, asynchronous=asynchronous)
        finally:
            transport.client = None

    def _create_client(self: Any, asynchronous: bool = False) -> Any:
        if asynchronous:  # the BRPOP client: kombu caches it itself (Channel.client)
            return original_create_client(self, asynchronous=True)
        pool = self.pool
        cached = self.__dict__.get("_bookgen_client")
        if cached is None or cached.connection_pool is not pool:
            cached = self._bookgen_client = original_create_client(self, asynchronous=False)
        return cached

    def restore_unacked(self: Any, client: Any = None) -> Any:
        for tag in running_delivery_tags():
            self._delivered.pop(tag, None)
        return original_restore(self, client)

    channel_cls.__init__ = __init__
    channel_cls._connparams = _connparams
    channel_cls._brpop_read = _brpop_read
    channel_cls._create_client = _create_client
    qos_cls.restore_unacked = restore_unacked
    setattr(channel_cls, _APPLIED, True)
    return True
