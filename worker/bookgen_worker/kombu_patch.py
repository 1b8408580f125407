"""A minimal patch of kombu's Redis transport, so a Redis restart no longer kills busy workers.

The bug (kombu 5.7.0, the newest release; reported in README "Known limits"):

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
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis

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


def apply() -> None:
    """Patch kombu's Redis Channel and QoS in this process; idempotent."""
    channel_cls: Any = kombu_redis.Channel
    qos_cls: Any = kombu_redis.QoS
    if getattr(channel_cls, _APPLIED, False):
        return
    original_init = channel_cls.__init__
    original_connparams = channel_cls._connparams
    original_restore = qos_cls.restore_unacked

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

    def restore_unacked(self: Any, client: Any = None) -> Any:
        for tag in running_delivery_tags():
            self._delivered.pop(tag, None)
        return original_restore(self, client)

    channel_cls.__init__ = __init__
    channel_cls._connparams = _connparams
    qos_cls.restore_unacked = restore_unacked
    setattr(channel_cls, _APPLIED, True)
