"""A write refused at maxmemory is recognised through every wrapper (redis-py's OutOfMemoryError, kombu's
OperationalError around it) and reported to a user as one line that names the cause."""

from __future__ import annotations

import argparse

import pytest
import redis
from bookgen_operator import cli
from bookgen_worker.errors import RedisFull
from bookgen_worker.redis_client import is_redis_full
from kombu.exceptions import OperationalError

OOM = "command not allowed when used memory > 'maxmemory'."


def wrapped_by_kombu() -> OperationalError:
    try:
        try:
            raise redis.exceptions.OutOfMemoryError(f"Command # 1 (LPUSH export ...) of pipeline caused error: {OOM}")
        except redis.exceptions.RedisError as exc:
            raise OperationalError(str(exc)) from exc
    except OperationalError as outer:
        return outer


@pytest.mark.parametrize("exc", [redis.exceptions.OutOfMemoryError(OOM), wrapped_by_kombu()],
                         ids=["redis-py", "kombu"])
def test_a_refusal_at_maxmemory_is_recognised(exc: Exception) -> None:
    assert is_redis_full(exc)


@pytest.mark.parametrize("exc", [redis.exceptions.ConnectionError("Connection refused"),
                                 redis.exceptions.ResponseError("WRONGTYPE"), ValueError("x"), None])
def test_other_errors_are_not(exc: Exception | None) -> None:
    assert not is_redis_full(exc)


def test_the_message_names_the_cause_and_what_to_do() -> None:
    text = str(RedisFull("the new job"))
    assert text.startswith("the queue's Redis is full (maxmemory reached): it refused the new job")
    assert "nothing already queued is lost" in text and "raise the Redis memory limit" in text
    assert "\n" not in text


@pytest.mark.parametrize("exc", [wrapped_by_kombu(), redis.exceptions.OutOfMemoryError(OOM)], ids=["kombu", "redis-py"])
def test_any_command_refused_at_maxmemory_prints_one_line_and_exits_2(
    exc: Exception, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not `lost the connection to Redis`, which kombu's wrapper would otherwise make it."""
    def handler(_args: argparse.Namespace) -> int:
        raise exc

    parser = cli.build_parser()
    real_parse = parser.parse_args
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    monkeypatch.setattr(parser, "parse_args", lambda argv=None: argparse.Namespace(
        **{**vars(real_parse(["jobs"])), "handler": handler}))
    assert cli.main(["jobs"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bookgen: error: the queue's Redis is full (maxmemory reached)")
    assert err.count("\n") == 1 and "Traceback" not in err
