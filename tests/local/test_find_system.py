"""Commands started in the folder of a `bookgen up` reach its Redis without REDIS_URL (issue 16.1),
even when another Redis answers on the default port 6379."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from bookgen_operator.cli.target import REDIS_ENV, STATE_DIR_ENV
from bookgen_operator.local.redis import port_free

from tests.local.conftest import BOOKGEN, Up, spec_yaml
from tests.support.waiting import wait_for
from tests.support.workers import FAST_TEST_ENV, REPO_ROOT, stop_process


def _clean_env() -> dict[str, str]:
    """A shell that was told nothing: no REDIS_URL, REDIS_HOST..., no BOOKGEN_STATE_DIR."""
    env = {k: v for k, v in os.environ.items() if k not in (*REDIS_ENV, STATE_DIR_ENV)}
    return {**env, **FAST_TEST_ENV,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))}


@pytest.fixture(scope="module")
def folder_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    """`bookgen up` in a fresh folder with every default that matters here: ./.bookgen, port 6380
    unless taken (then any free port, as a user would choose with --redis-port)."""
    folder = tmp_path_factory.mktemp("project")
    (folder / "queue.yaml").write_text(spec_yaml(content_max=1))
    out_path = folder / "up.out"
    redis_port = "6380" if port_free(6380) else "0"
    with open(out_path, "w") as out:
        process = subprocess.Popen(
            [BOOKGEN, "up", "-f", "queue.yaml", "--no-view", "--redis-port", redis_port, "--flower-port", "0",
             "--metrics-port", "0"],
            env=_clean_env(), stdout=out, stderr=subprocess.STDOUT, text=True, cwd=folder,
        )
    up = Up(folder / ".bookgen", process, out_path)
    try:
        up.wait_ready(workers=2)
        yield up
    finally:
        up.stop()


def _bookgen(up: Up, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """A separate process, started in the folder of `bookgen up`, as a second shell would run it."""
    return subprocess.run([BOOKGEN, *args], cwd=up.state_dir.parent, env=_clean_env(), capture_output=True,
                          text=True, timeout=timeout)


def _reaches_up(up: Up) -> str:
    status = _bookgen(up, "status", "-o", "json")
    assert status.returncode == 0, status.stderr
    workers = json.loads(status.stdout)["workers"]
    assert {w["pool"] for w in workers} == {"content", "monitoring"}  # the workers of this `bookgen up`
    submit = _bookgen(up, "submit", "Ada Lovelace", "--chapters", "2", "--words", "40", "--formats", "md", "--wait")
    assert submit.returncode == 0, submit.stdout + submit.stderr
    job_id = submit.stdout.splitlines()[0].strip()
    assert up.client.exists(f"bookgen:job:{job_id}")  # the job is in the Redis of `bookgen up`
    assert "COMPLETED" in submit.stdout
    return job_id


def test_status_and_submit_from_the_folder_reach_bookgen_up(folder_up: Up) -> None:
    out = folder_up.output()
    assert 'eval "$(bookgen env)"' in out  # up says how to point another shell at it
    assert folder_up.redis_url().split("@")[0].split(":")[-1] not in out  # never the password in its output
    _reaches_up(folder_up)


def test_bookgen_env_points_a_shell_from_anywhere(folder_up: Up, tmp_path: Path) -> None:
    printed = _bookgen(folder_up, "env")
    assert printed.returncode == 0, printed.stderr
    assert f"export {STATE_DIR_ENV}=" in printed.stdout and "export REDIS_URL=" in printed.stdout
    script = f'eval "$({BOOKGEN} env)" && cd {tmp_path} && {BOOKGEN} status -o json'
    result = subprocess.run(["bash", "-c", script], cwd=folder_up.state_dir.parent, env=_clean_env(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["workers"]


def test_another_redis_on_6379_does_not_capture_the_commands(folder_up: Up, tmp_path: Path) -> None:
    if not port_free(6379):
        pytest.skip("port 6379 is in use on this machine: cannot start the decoy Redis there (the part "
                    "without it ran in test_status_and_submit_from_the_folder_reach_bookgen_up)")
    decoy = subprocess.Popen(
        [str(shutil.which("redis-server")), "--port", "6379", "--bind", "127.0.0.1", "--save", "", "--appendonly",
         "no", "--dir", str(tmp_path), "--loglevel", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=6379)
    try:
        wait_for(lambda: _pings(client, decoy), timeout=20, what="the decoy redis-server on 6379 to answer")
        _reaches_up(folder_up)
        assert client.dbsize() == 0  # nothing went to the Redis on the default port
    finally:
        client.close()
        stop_process(decoy)


def _pings(client: redis.Redis, process: subprocess.Popen[bytes]) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"the decoy redis-server exited with {process.returncode}")
    try:
        return bool(client.ping())
    except redis.exceptions.ConnectionError:
        return False
