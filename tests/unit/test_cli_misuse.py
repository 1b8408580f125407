"""A corpus of `bookgen` misuse (issue 15.6): every sub-command with bad arguments, bad and missing
configuration, Redis absent, gone mid-command or with the wrong password, EOF on stdin. Each one
must end with one line on stderr and a non-zero exit status, never a traceback.

In-process main() with captured output stands in for a subprocess (the same code runs; the
environment is set with monkeypatch); subprocesses only where a process boundary is the point:
`--help` under a bad environment, and `watch` while its Redis is killed.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import redis
from bookgen_operator.cli import main
from bookgen_operator.cli.target import REDIS_ENV, STATE_DIR_ENV

from tests.support.redis_server import free_port, start_redis
from tests.support.waiting import wait_for

BOOKGEN = str(Path(sys.executable).with_name("bookgen"))

#: Every sub-command that talks to a system, with valid arguments.
COMMANDS: list[list[str]] = [
    ["status"], ["status", "-o", "yaml"], ["jobs"], ["jobs", "-o", "json"], ["submit", "Ada Lovelace"],
    ["watch", "some-job"], ["show", "some-job"], ["pause", "some-job"], ["resume", "some-job"],
    ["cancel", "some-job"], ["dlq", "list"], ["dlq", "show", "t-1"], ["dlq", "replay", "--all"],
    ["dlq", "purge", "--yes"], ["files", "some-job"], ["files", "some-job", "-o", "json"],
    ["fetch", "some-job", "-o", "books", "--format", "md"],
]

BAD_ARGUMENTS: list[list[str]] = [
    [], ["bogus"], ["--bogus", "status"], ["status", "--queue", "nope"], ["status", "-o", "xml"],
    ["jobs", "--limit", "abc"], ["jobs", "--limit", "0"], ["submit"], ["submit", "Ada", "--chapters", "x"],
    ["submit", "Ada", "--chapters", "0"], ["submit", "Ada", "--priority", "42"], ["submit", "Ada", "--formats", "epub"],
    ["submit", " "], ["watch"], ["show"], ["pause"], ["resume"], ["cancel"], ["dlq"], ["dlq", "bogus"],
    ["dlq", "show"], ["dlq", "replay"], ["env", "--bogus"], ["render"], ["render", "-f", "/no/such/file.yaml"],
    ["up", "-f", "/no/such/file.yaml"], ["up", "--redis-port", "abc"], ["up", "--redis-url", "http://x"],
    ["demo", "--chapters", "0"], ["demo", "--pace", "-1"], ["--state-dir", "/no/such/folder", "status"],
    ["status", "--state-dir", "/no/such/folder"], ["status", "--redis-url", "http://localhost:6379"],
    ["files"], ["fetch"], ["files", "j", "-o", "xml"], ["files", "j", "-n", "books"],
    ["fetch", "j", "--queue", "q", "-n", "books", "--context", "no-such-context"],
]

BAD_CONFIGURATION: list[dict[str, str]] = [
    {"REDIS_URL": "http://x"}, {"REDIS_PORT": "abc"}, {"REDIS_DB": "first"},
    {"BOOKGEN_PRIORITY_STEPS": "9,0"}, {"BOOKGEN_PRIORITY_STEPS": "1,a"}, {"BOOKGEN_MAX_RETRIES": "many"},
    {"BOOKGEN_RETRY_OVERRIDES": "{not json"}, {"BOOKGEN_RETRY_OVERRIDES": '{"export": {"colour": 1}}'},
    {"BOOKGEN_RETRY_JITTER": "sometimes"}, {"BOOKGEN_SOFT_TIME_LIMIT": "5000"}, {"BOOKGEN_GENERATOR": "magic"},
    {"BOOKGEN_GENERATOR": "openai"}, {"BOOKGEN_OFFLINE_SECONDS": "-3"}, {STATE_DIR_ENV: "/no/such/folder"},
    {"BOOKGEN_EXPORTS": "ftp"}, {"BOOKGEN_EXPORTS": "s3"}, {"BOOKGEN_EXPORTS": "s3", "BOOKGEN_S3_BUCKET": "b",
                                                            "BOOKGEN_S3_ENDPOINT": "s3.example.com"},
]


@pytest.fixture
def shell(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A shell told nothing, in an empty folder (no ./.bookgen)."""
    for name in (*REDIS_ENV, STATE_DIR_ENV, "BOOKGEN_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(argv: Sequence[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse: usage errors (2), --help (0)
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(argv: Sequence[str], code: int, out: str, err: str) -> None:
    what = f"bookgen {' '.join(argv)}"
    assert code != 0, f"{what}: exit status 0\n{out}{err}"
    assert "Traceback" not in out + err, f"{what}:\n{err}"
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"{what}: {len(lines)} lines on stderr:\n{err}"
    assert lines[0].startswith("bookgen"), f"{what}: {lines[0]}"
    assert "unexpected" not in lines[0], f"{what}: an error nobody handled: {lines[0]}"


@pytest.mark.parametrize("argv", BAD_ARGUMENTS, ids=" ".join)
def test_bad_arguments(shell: Path, capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    assert_one_line_error(argv, *run(argv, capsys))


@pytest.mark.parametrize("env", BAD_CONFIGURATION, ids=lambda env: ",".join(f"{k}={v}" for k, v in env.items()))
def test_bad_configuration_breaks_no_command(shell: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str], env: dict[str, str]) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for argv in COMMANDS:
        code, out, err = run(argv, capsys)
        assert_one_line_error(argv, code, out, err)
        assert "http://x" not in err or "REDIS_URL" in err  # names the variable, not just the value


def test_help_and_version_work_whatever_the_environment_holds() -> None:
    env = {**os.environ, "REDIS_URL": "http://x", "REDIS_PORT": "abc", "BOOKGEN_PRIORITY_STEPS": "9,0"}
    runs = {tuple(argv): subprocess.Popen([BOOKGEN, *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                           text=True)  # in parallel: each start-up costs about a second
            for argv in (["--help"], ["status", "--help"], ["dlq", "purge", "--help"], ["up", "--help"],
                         ["--version"])}
    for argv, process in runs.items():
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0 and err == "", (argv, err)
        assert out.startswith(("usage: bookgen", "bookgen ")), argv


def test_a_state_folder_without_a_system(shell: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (shell / "empty").mkdir()
    (shell / "broken").mkdir()
    (shell / "broken" / "connection.json").write_text("{not json")
    for folder in ("empty", "broken"):
        for argv in (["--state-dir", folder, "status"], ["env", "--state-dir", folder]):
            assert_one_line_error(argv, *run(argv, capsys))
    assert_one_line_error(["env"], *run(["env"], capsys))  # no ./.bookgen here


def test_redis_absent(shell: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("REDIS_URL", f"redis://:pw-not-shown@127.0.0.1:{free_port()}/0")
    for argv in COMMANDS:
        code, out, err = run(argv, capsys)
        assert_one_line_error(argv, code, out, err)
        assert "cannot reach Redis at redis://:***@127.0.0.1" in err and "pw-not-shown" not in out + err


def test_the_wrong_password(shell: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                            redis_url: str) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url.replace(":test-password@", ":wrong-one@"))
    for argv in COMMANDS:
        code, out, err = run(argv, capsys)
        assert_one_line_error(argv, code, out, err)
        assert "refused the password" in err and "wrong-one" not in out + err


#: What redis-py sends before a command (HELLO 3, CLIENT SETINFO ...), and the CLI's reachability PING.
HANDSHAKE = (b"HELLO", b"CLIENT", b"PING", b"AUTH", b"SELECT")
HELLO_REPLY = b"%1\r\n$5\r\nproto\r\n:3\r\n"  # a RESP3 map: {"proto": 3}


def _commands(buffer: bytes) -> tuple[list[bytes], bytes]:
    """Complete RESP commands (their names, upper case) at the start of `buffer`, and the rest."""
    names = []
    while buffer.startswith(b"*"):
        head, sep, rest = buffer.partition(b"\r\n")
        if not sep:
            break
        parts, ok = [], True
        for _ in range(int(head[1:])):
            size_line, sep, rest = rest.partition(b"\r\n")
            size = int(size_line[1:]) if sep else -1
            if size < 0 or len(rest) < size + 2:
                ok = False
                break
            parts.append(rest[:size])
            rest = rest[size + 2:]
        if not ok:
            break
        names.append(parts[0].upper())
        buffer = rest
    return names, buffer


@pytest.fixture
def redis_that_leaves() -> Iterator[str]:
    """A server that answers the connection set-up and the reachability PING, and then is gone: it
    closes the connection on the first real command and refuses all others, as a Redis that stops
    mid-command does."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]

    def serve() -> None:
        with server:
            conn, _ = server.accept()
            with conn:
                buffer = b""
                while data := conn.recv(65536):
                    names, buffer = _commands(buffer + data)
                    for name in names:
                        if name not in HANDSHAKE:
                            return  # the first real command: no answer, the connection closes
                        conn.sendall(HELLO_REPLY if name == b"HELLO" else b"+PONG\r\n" if name == b"PING"
                                     else b"+OK\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"redis://127.0.0.1:{port}/0"
    thread.join(timeout=10)


@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_redis_gone_mid_command(shell: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                redis_that_leaves: str, argv: list[str]) -> None:
    monkeypatch.setenv("REDIS_URL", redis_that_leaves)
    code, out, err = run(argv, capsys)
    assert_one_line_error(argv, code, out, err)
    assert f"lost the connection to Redis at {redis_that_leaves}" in err or "lost Redis at" in err


def test_eof_on_stdin_deletes_nothing(shell: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str], redis_url: str,
                                      redis_client: redis.Redis) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    redis_client.hset("failed_tasks", "t-1", "{}")
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    code, out, err = run(["dlq", "purge"], capsys)
    assert_one_line_error(["dlq", "purge"], code, out, err)
    assert "--yes" in err and redis_client.hlen("failed_tasks") == 1


@pytest.mark.parametrize("output", ["table", "json"])
def test_watch_when_redis_goes_away(tmp_path: Path, output: str) -> None:
    server = start_redis(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in (*REDIS_ENV, STATE_DIR_ENV)}
    env["REDIS_URL"] = server.url()
    try:
        submitted = subprocess.run([BOOKGEN, "submit", "Ada", "--chapters", "2"], env=env, capture_output=True,
                                   text=True, timeout=60, cwd=tmp_path)  # no worker: it stays PENDING
        assert submitted.returncode == 0, submitted.stderr
        job_id = submitted.stdout.strip()
        watch = subprocess.Popen([BOOKGEN, "watch", job_id, "-o", output], env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, cwd=tmp_path)
        client = server.client()
        wait_for(lambda: len(client.client_list()) >= 2, timeout=30, what="`bookgen watch` to connect")
        client.close()
        server.stop()
        out, err = watch.communicate(timeout=60)
        assert_one_line_error(["watch", job_id], watch.returncode, out, err)
        assert "lost Redis" in err
    finally:
        server.stop()


@pytest.mark.parametrize("env", [{"BOOKGEN_PRIORITY_STEPS": "9,0"}, {"BOOKGEN_MAX_RETRIES": "many"},
                                 {"BOOKGEN_RETRY_OVERRIDES": "{not json"}], ids=lambda env: ",".join(env))
def test_up_with_a_bad_variable_starts_nothing(shell: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str], env: dict[str, str]) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    argv = ["up", "--no-view", "--state-dir", str(shell / "state"), "--redis-port", "0", "--metrics-port", "0",
            "--flower-port", "0", "--duration", "1"]  # should it start after all, it stops by itself
    code, out, err = run(argv, capsys)
    assert_one_line_error(argv, code, out, err)
    assert not (shell / "state" / "redis.conf").exists() and out == ""  # no Redis was started, nothing to stop
