"""The supervisor's process groups and the private Redis of `bookgen up`, with real processes."""

from __future__ import annotations

import os
import signal
import socket
import stat
import sys
from pathlib import Path

import pytest
from bookgen_operator.local.redis import LocalError, pick_port, start_local_redis, stop_local_redis
from bookgen_operator.local.supervisor import Supervisor

from tests.support.waiting import wait_for

# A parent that ignores SIGTERM and has a child of its own: the worst case for "no orphans".
STUBBORN = (
    "import os, signal, subprocess, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import signal,time; "
    "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)'])\n"
    "open(sys.argv[1], 'w').write(str(child.pid))\n"
    "time.sleep(600)\n"
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is not alive for our purposes.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_stop_all_kills_a_stubborn_group_after_the_grace_period(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path)
    marker = tmp_path / "grandchild.pid"
    child = sup.start("stubborn", [sys.executable, "-c", STUBBORN, str(marker)], os.environ)
    grandchild = int(wait_for(lambda: marker.exists() and marker.read_text(), timeout=20, what="grandchild"))
    assert _alive(grandchild)
    killed = sup.stop_all(grace=0.5)
    assert killed == ["stubborn"]
    assert not child.running
    wait_for(lambda: not _alive(grandchild), timeout=5, what="the grandchild to die with its group")
    assert sup.children == {}


def test_a_polite_child_stops_warm_within_the_grace_period(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path)
    ready = tmp_path / "ready"
    code = ("import signal, sys, time\nsignal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
            "open(sys.argv[1], 'w').close()\ntime.sleep(600)\n")
    child = sup.start("polite", [sys.executable, "-c", code, str(ready)], os.environ)
    wait_for(ready.exists, timeout=10, what="the child to install its SIGTERM handler")
    assert sup.stop_all(grace=10) == []
    assert child.returncode == 0


def test_leftovers_of_a_crashed_run_are_killed(tmp_path: Path) -> None:
    first = Supervisor(tmp_path)
    child = first.start("sleeper", [sys.executable, "-c", "import time; time.sleep(600)"], os.environ)
    # A new supervisor for the same state folder (the previous `bookgen up` died without cleaning up).
    second = Supervisor(tmp_path)
    assert second.reap_leftovers() == [child.pid]
    child.process.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL


def test_local_redis_keeps_data_across_restarts_with_a_private_password(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path)
    server = start_local_redis(sup, tmp_path, 0, env=os.environ)
    password_file = tmp_path / "redis-password"
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "redis.conf").stat().st_mode) == 0o600
    assert server.password not in " ".join(server.child.argv)  # never on the command line
    client = server.client()
    client.rpush("queued", "task-1", "task-2")
    client.close()
    stop_local_redis(sup, server)
    assert not server.child.running

    again = start_local_redis(sup, tmp_path, 0, env=os.environ)
    assert again.password == server.password
    client = again.client()
    assert client.lrange("queued", 0, -1) == [b"task-1", b"task-2"]
    client.close()
    stop_local_redis(sup, again)


def test_a_taken_port_is_named_in_the_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(LocalError, match=rf"port {port} for Redis is already in use.*--redis-port"):
            pick_port(port, "Redis", "--redis-port")


def test_missing_redis_server_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(LocalError, match="sudo apt-get install redis-server"):
        start_local_redis(Supervisor(tmp_path), tmp_path, 0, env=os.environ)


def test_local_redis_never_evicts_and_takes_maxmemory_only_when_the_spec_sets_it(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path)
    for maxmemory, expected in ((None, "0"), (64 * 2**20, str(64 * 2**20))):
        server = start_local_redis(sup, tmp_path, 0, env=os.environ, maxmemory=maxmemory)
        client = server.client()
        try:
            assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
            assert client.config_get("maxmemory") == {"maxmemory": expected}
        finally:
            client.close()
            stop_local_redis(sup, server)
