"""Flower: authentication on by default, bounded task memory, same broker; proved on a real Flower."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from bookgen_worker.config import ConfigError
from bookgen_worker.flower import build_parser, flower_command, main

from tests.support.redis_server import free_port
from tests.support.waiting import wait_for


def _args(*argv: str):  # type: ignore[no-untyped-def]
    return build_parser().parse_args(list(argv))


def test_refuses_to_start_without_credentials(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    for name in ("FLOWER_BASIC_AUTH", "FLOWER_USER", "FLOWER_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    assert main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bookgen flower: error: Flower needs credentials") and err.count("\n") == 1


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FLOWER_USER": "admin"}, "set both"),
        ({"FLOWER_BASIC_AUTH": "admin:"}, "user:password"),
        ({"FLOWER_BASIC_AUTH": "admin:a,b"}, "','"),
    ],
)
def test_malformed_credentials_are_clear_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        flower_command(_args(), env)


def test_credentials_travel_in_the_environment_not_the_command_line() -> None:
    command, env = flower_command(_args("--max-tasks", "500"), {"FLOWER_USER": "admin", "FLOWER_PASSWORD": "s3cret"})
    assert env["FLOWER_BASIC_AUTH"] == "admin:s3cret"
    assert "FLOWER_USER" not in env and "FLOWER_PASSWORD" not in env  # Flower rejects unknown FLOWER_* names
    assert not any("s3cret" in part for part in command)
    assert "--max_tasks=500" in command and "bookgen_worker.app" in command


def test_max_tasks_is_bounded() -> None:
    with pytest.raises(ConfigError, match="max-tasks"):
        flower_command(_args("--max-tasks", "0"), {"FLOWER_BASIC_AUTH": "a:b"})


@pytest.fixture
def flower(redis_url: str, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "REDIS_URL": redis_url, "FLOWER_USER": "admin", "FLOWER_PASSWORD": "s3cret"}
    env.pop("FLOWER_BASIC_AUTH", None)
    log = tmp_path / "flower.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "bookgen_worker.flower", "--port", str(port), "--address", "127.0.0.1"],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"flower exited {process.returncode}: {log.read_text()[-2000:]}")
        try:
            httpx.get(url + "/healthcheck", timeout=2)
        except httpx.HTTPError:
            return False
        return True

    try:
        wait_for(up, timeout=60, what="flower to answer")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_real_flower_demands_the_password(flower: str) -> None:
    assert httpx.get(flower + "/api/workers", timeout=10).status_code == 401
    assert httpx.get(flower + "/api/workers", auth=("admin", "wrong"), timeout=10).status_code == 401
    assert httpx.get(flower + "/api/workers", auth=("admin", "s3cret"), timeout=10).status_code == 200
