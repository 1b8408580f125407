"""A real redis-server on a free loopback port, with a password, for one test session."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import redis

from .waiting import wait_for


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RedisServer:
    port: int
    password: str
    process: subprocess.Popen[bytes]
    #: The command line, so `restart` brings the same server (port, data folder) back.
    argv: tuple[str, ...] = ()

    def url(self, db: int = 0) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/{db}"

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis.from_url(self.url(db))

    def restart(self, sig: int = signal.SIGTERM) -> None:
        """Stop the server with `sig` (SIGTERM: clean shutdown; SIGKILL: a crash) and start it again on
        the same port and data folder; returns once it answers."""
        self.process.send_signal(sig)
        self.process.wait(timeout=30)
        self.process = subprocess.Popen(list(self.argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_until_answering(self)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_redis(workdir: Path, password: str = "test-password", *, aof: bool = False,
                extra: tuple[str, ...] = ()) -> RedisServer:
    """`aof=True`: every write is fsynced to an append-only file, so the data survive even SIGKILL.
    `extra`: more redis-server options, e.g. ("--maxmemory", "8mb")."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed: run ./scripts/test, which installs it with apt")
    port = free_port()
    persistence = ["--appendonly", "yes", "--appendfsync", "always"] if aof else ["--appendonly", "no"]
    argv = (binary, "--port", str(port), "--bind", "127.0.0.1", "--requirepass", password,
            "--save", "", *persistence, "--dir", str(workdir), "--loglevel", "warning", *extra)
    process = subprocess.Popen(list(argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = RedisServer(port=port, password=password, process=process, argv=argv)
    _wait_until_answering(server)
    return server


def _wait_until_answering(server: RedisServer) -> None:
    def answers() -> bool:
        if server.process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {server.process.returncode}")
        try:
            with server.client() as client:
                return bool(client.ping())
        except redis.exceptions.ConnectionError:
            return False

    wait_for(answers, timeout=20, what="redis-server to answer PING")
