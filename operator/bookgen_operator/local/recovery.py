"""Requeue what a crashed `bookgen up` left delivered but unacknowledged, at once.

Kombu's Redis transport keeps every delivered, not yet acknowledged message in its `unacked` hash
and hands it back only after the visibility timeout (2 hours by default), so a task running when
the whole machine lost power would wait that long. When `bookgen up` starts with its own Redis it
holds the state folder's lock and has killed any leftover process, so no consumer of the previous
run can still be working on those messages: they are requeued now, with kombu's own restore code
(visibility timeout 0 = every entry is overdue). Not done for an external Redis, which other
consumers may share.
"""

from __future__ import annotations

from bookgen_worker.config import Settings
from kombu.connection import Connection

BATCH = 1000


def requeue_unacked(settings: Settings) -> int:
    """Move every unacknowledged message back to its queue; return how many there were."""
    options = {**settings.transport_options(), "visibility_timeout": 0}
    with Connection(settings.redis_url, transport_options=options) as connection:
        channel = connection.default_channel
        qos = channel.qos
        total = 0
        with channel.conn_or_acquire() as client:
            while True:
                before = int(client.hlen(qos.unacked_key))
                if before == 0:
                    return total
                qos.restore_visible(start=0, num=BATCH, interval=1)
                after = int(client.hlen(qos.unacked_key))
                if after >= before:  # nothing moved (e.g. another process holds the restore mutex)
                    return total
                total += before - after
