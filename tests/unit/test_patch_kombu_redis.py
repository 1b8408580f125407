"""The queue-item decoder of the kombu patch: envelopes pass unchanged, anything else keeps its bytes."""

from __future__ import annotations

import base64
import json

import pytest
from bookgen_worker.patches.kombu_redis import CORRUPT_HEADER, decode_item, envelope_problem

GOOD = {
    "body": "W10=", "content-type": "application/json", "headers": {"task": "x"},
    "properties": {"delivery_tag": "t", "delivery_info": {"exchange": "q", "routing_key": "q"}},
}


def test_a_kombu_envelope_passes_unchanged() -> None:
    assert envelope_problem(GOOD) is None
    assert decode_item(json.dumps(GOOD).encode(), "q") == GOOD


@pytest.mark.parametrize("raw", [b"not json {{", b"42", b"[1, 2]", b"{}", b'{"properties": {}}', b"\xff\xfe",
                                 b'{"properties": {"delivery_tag": "t"}}', b""])
def test_anything_else_becomes_a_stand_in_envelope_with_its_raw_bytes(raw: bytes) -> None:
    envelope = decode_item(raw, "content_generation")
    assert envelope_problem(envelope) is None  # kombu and Celery can handle it
    assert envelope["headers"][CORRUPT_HEADER]
    assert "task" not in envelope["headers"]  # so Celery rejects it as "not a task message"
    body = json.loads(envelope["body"])
    assert base64.b64decode(body["raw_base64"]) == raw
    assert envelope["properties"]["delivery_info"]["routing_key"] == "content_generation"


def test_a_channel_builds_one_redis_client_per_pool(redis_url: str) -> None:
    from bookgen_worker.patches import kombu_redis as kombu_patch
    from kombu import Connection

    kombu_patch.apply()
    with Connection(redis_url) as connection:
        channel = connection.default_channel
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
            assert first is second  # not a new redis.Redis (and its callbacks copy) per ack
            assert first.connection_pool is channel.pool
            assert first.ping()
        channel._disconnect_pools()  # what kombu does after a fork or a lost connection
        with channel.conn_or_acquire() as third:
            assert third is not first and third.connection_pool is channel.pool
            assert third.ping()
