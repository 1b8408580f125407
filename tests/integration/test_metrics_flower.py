"""Flower: authentication on by default, bounded task memory, same broker; proved on a real Flower."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from bookgen_worker.config import ConfigError
from bookgen_worker.flower import build_parser, flower_command, main

from tests.support.redis_server import free_port
from tests.support.waiting import wait_for
from tests.support.workers import start_worker, stop_process


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


def test_purge_and_url_prefix_reach_flower() -> None:
    command, _ = flower_command(_args("--purge-offline-workers", "30", "--url-prefix", "bookgen/flower"),
                                {"FLOWER_BASIC_AUTH": "a:b"})
    assert command[1:3] == ["-m", "bookgen_worker.flower_purge"]
    assert "--purge_offline_workers=30" in command and "--url_prefix=bookgen/flower" in command
    plain, _ = flower_command(_args(), {"FLOWER_BASIC_AUTH": "a:b"})
    assert plain[1:3] == ["-m", "celery"] and not any("purge" in arg for arg in plain)


@pytest.mark.parametrize(("argv", "message"), [
    (("--purge-offline-workers", "0"), "--purge-offline-workers must be from 1 to 604800 seconds (got 0)"),
    (("--url-prefix", "/flower/"), "--url-prefix must be a path such as flower or bookgen/flower (got '/flower/')"),
])
def test_purge_and_prefix_are_checked(argv: tuple[str, ...], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        flower_command(_args(*argv), {"FLOWER_BASIC_AUTH": "a:b"})


PURGE_SECONDS = 3


@pytest.fixture
def purging_flower(redis_url: str, tmp_path: Path) -> Iterator[str]:
    """A real Flower under a URL prefix that forgets workers 3 s after they went offline."""
    port = free_port()
    env = {**os.environ, "REDIS_URL": redis_url, "FLOWER_BASIC_AUTH": "admin:s3cret"}
    log = tmp_path / "flower.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "bookgen_worker.flower", "--port", str(port), "--address", "127.0.0.1",
             "--purge-offline-workers", str(PURGE_SECONDS), "--url-prefix", "bookgen/flower"],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/bookgen/flower"

    def up() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"flower exited {process.returncode}: {log.read_text()[-2000:]}")
        try:
            return httpx.get(url + "/healthcheck", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(up, timeout=60, what="flower to answer under its prefix")
        yield url
    finally:
        stop_process(process, timeout=10)


def test_flower_lists_only_the_live_workers_after_a_pool_scales_4_to_1(
        purging_flower: str, redis_url: str, tmp_path: Path) -> None:
    """Issue 24, acceptance 6, with real workers: 1 -> 4 -> 1; within the purge period every API of
    Flower (the worker list, its status and the dashboard's JSON) lists only the one that is left."""
    auth = ("admin", "s3cret")

    def api(path: str) -> Any:
        answer = httpx.get(purging_flower + path, auth=auth, timeout=10)
        answer.raise_for_status()
        return answer.json()

    workers = [start_worker(redis_url=redis_url, queues=["default"], name=f"w{i}", workdir=tmp_path)
               for i in range(1, 5)]
    try:
        names = {f"w{i}@test" for i in range(1, 5)}
        wait_for(lambda: set(api("/api/workers?refresh=1")) == names, timeout=60, interval=0.5,
                 what="Flower to list the four workers")
        wait_for(lambda: set(api("/api/workers?status=1")) == names, timeout=30, interval=0.5,
                 what="Flower's events to know the four workers")
        for worker in workers[1:]:
            worker.stop()
        stopped = time.monotonic()

        def only_the_live_one() -> bool:
            return (set(api("/api/workers")) == {"w1@test"} and set(api("/api/workers?status=1")) == {"w1@test"}
                    and {w["hostname"] for w in api("/workers?json=1")["data"]} == {"w1@test"})

        wait_for(only_the_live_one, timeout=PURGE_SECONDS * 1.25 + 10, interval=0.5,
                 what="Flower to forget the three stopped workers")
        print(f"the stopped workers were gone from Flower {time.monotonic() - stopped:.1f} s after they stopped "
              f"(purge period {PURGE_SECONDS} s)")
        assert api("/api/workers?status=1") == {"w1@test": True}
    finally:
        for worker in workers:
            worker.stop()
