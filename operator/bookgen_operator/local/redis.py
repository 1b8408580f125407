"""A private redis-server for `bookgen up`: password and data in the state folder, append-only.

- The password is generated once into `<state>/redis-password` (mode 0600) and reused, so queued
  tasks written by one run are readable by the next.
- The password reaches redis-server through a 0600 config file, never its command line (`ps`).
- Persistence: `appendonly yes` + `appendfsync everysec` in `<state>/redis/`. Stopping sends SIGTERM,
  on which Redis fsyncs the AOF and exits, so everything still queued is there on the next start.
- Only 127.0.0.1 is bound: the local runtime is for one machine.
- Memory: `maxmemory-policy noeviction`, as on Kubernetes (a full queue refuses submissions, it never
  drops tasks). maxmemory only when the spec sets `spec.redis.maxmemory`: here no container limit
  kills Redis, so 80% of `resources.limits.memory` (the cluster's default) would only refuse work the
  machine has room for.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import redis as redis_py
from bookgen_worker.errors import BookGenError

from bookgen_operator.core.resources.redis_memory import MAXMEMORY_POLICY
from bookgen_operator.local.supervisor import Child, Supervisor

INSTALL_HINT = "install it with: sudo apt-get install redis-server"
DEFAULT_PORT = 6380  # not 6379: a system Redis often holds that one


class LocalError(BookGenError):
    """`bookgen up` cannot start as asked; the message says why and what to do."""


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def pick_port(wanted: int, what: str, option: str) -> int:
    """`wanted` if free (0 = any free port); else a one-line error naming the port and the option."""
    if wanted == 0:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])
    if not port_free(wanted):
        raise LocalError(f"port {wanted} for {what} is already in use; stop what holds it or choose another "
                         f"with {option} (0 picks a free one)")
    return wanted


def secret_file(path: Path, make: str) -> tuple[str, bool]:
    """Read a secret from `path`, creating it with `make` (mode 0600) if absent. Returns (value, created)."""
    if path.exists():
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)  # tighten a file someone loosened
        return path.read_text().strip(), False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(make + "\n")
    return make, True


@dataclass
class LocalRedis:
    port: int
    password: str
    child: Child

    @property
    def url(self) -> str:
        return f"redis://:{quote(self.password, safe='')}@127.0.0.1:{self.port}/0"

    def client(self) -> redis_py.Redis:
        return redis_py.Redis.from_url(self.url, socket_connect_timeout=2)


def redis_binary(env: Mapping[str, str]) -> str:
    path = env.get("PATH")
    binary = shutil.which("redis-server", path=path)
    if binary is None:
        raise LocalError(f"redis-server was not found on PATH; {INSTALL_HINT}")
    return binary


def write_config(state_dir: Path, port: int, password: str, maxmemory: int | None = None) -> Path:
    data_dir = state_dir / "redis"
    data_dir.mkdir(parents=True, exist_ok=True)
    conf = state_dir / "redis.conf"
    text = "\n".join([
        f"port {port}",
        "bind 127.0.0.1",
        "protected-mode yes",
        f'requirepass "{password}"',
        f'dir "{data_dir}"',
        "appendonly yes",
        "appendfsync everysec",
        'save ""',
        f"maxmemory-policy {MAXMEMORY_POLICY}",
        *([f"maxmemory {maxmemory}"] if maxmemory is not None else []),
        "loglevel notice",
        "",
    ])
    fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    conf.chmod(0o600)
    return conf


def start_local_redis(supervisor: Supervisor, state_dir: Path, port: int, *, env: Mapping[str, str],
                      timeout: float = 20.0, maxmemory: int | None = None) -> LocalRedis:
    """redis-server on 127.0.0.1:`port`, started with the environment `env` (PATH finds the binary);
    `maxmemory` bytes (None: unlimited), never evicting."""
    binary = redis_binary(env)
    port = pick_port(port, "Redis", "--redis-port")
    password, _ = secret_file(state_dir / "redis-password", secrets.token_urlsafe(24))
    conf = write_config(state_dir, port, password, maxmemory)
    child = supervisor.start("redis", [binary, str(conf)], env)
    server = LocalRedis(port, password, child)
    deadline = time.monotonic() + timeout
    client = server.client()
    try:
        while True:
            if not child.running:
                tail = child.log_path.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
                raise LocalError(f"redis-server exited with {child.returncode}: {tail[0]} (log: {child.log_path})")
            try:
                # A Redis loading a large AOF answers LOADING; wait until it serves.
                if client.ping():
                    return server
            except redis_py.exceptions.BusyLoadingError:
                pass
            except (redis_py.exceptions.ConnectionError, redis_py.exceptions.TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise LocalError(f"redis-server did not answer within {timeout:g} s (log: {child.log_path})")
            time.sleep(0.05)
    finally:
        client.close()


def stop_local_redis(supervisor: Supervisor, server: LocalRedis, timeout: float = 30.0) -> None:
    """SIGTERM: Redis fsyncs its append-only file and exits (what SHUTDOWN does)."""
    with contextlib.suppress(Exception):
        supervisor.stop_all(timeout, names=[server.child.name])
