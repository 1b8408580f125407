"""A real S3-compatible server for the tests: versitygw (scripts/build-versitygw.sh builds it from its Go
module) on a free loopback port, its POSIX backend in a temporary folder, one bucket made as a folder.

`built_versitygw()` runs the build script (instant when cached), so `pytest tests/integration` works
without scripts/test too; without a Go toolchain the tests that need the server are skipped, saying so.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from .redis_server import free_port
from .waiting import wait_for
from .workers import REPO_ROOT, stop_process

ACCESS_KEY = "bookgen-test-access"
SECRET_KEY = "bookgen-test-secret-0123456789"


def built_versitygw() -> Path:
    given = os.environ.get("BOOKGEN_VERSITYGW_BIN")
    if given:
        return Path(given) / "versitygw"
    done = subprocess.run(["bash", str(REPO_ROOT / "scripts" / "build-versitygw.sh")], capture_output=True, text=True,
                          check=False)
    if done.returncode == 3:
        pytest.skip("no Go toolchain on PATH to build versitygw, the S3 server of these tests")
    if done.returncode != 0:
        raise RuntimeError(f"scripts/build-versitygw.sh failed: {done.stderr[-2000:]}")
    return Path(done.stdout.strip().splitlines()[-1]) / "versitygw"


@dataclass
class S3Server:
    endpoint: str
    root: Path
    bucket: str

    def object_path(self, key: str) -> Path:
        """Where the POSIX backend keeps an object's bytes (the bucket is a folder, the key a path)."""
        return self.root / self.bucket / key


@contextmanager
def running_s3(tmp: Path, bucket: str = "books") -> Iterator[S3Server]:
    binary = built_versitygw()
    root = tmp / "s3-data"
    (root / bucket).mkdir(parents=True)
    port = free_port()
    log = (tmp / "versitygw.log").open("wb")
    process = subprocess.Popen([str(binary), "--port", f"127.0.0.1:{port}", "--access", ACCESS_KEY,
                                "--secret", SECRET_KEY, "posix", str(root)], stdout=log, stderr=subprocess.STDOUT)
    try:
        def up() -> bool:
            import socket

            if process.poll() is not None:
                raise RuntimeError(f"versitygw exited with {process.returncode}: {(tmp / 'versitygw.log').read_text()}")
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", port)) == 0

        wait_for(up, timeout=30, what="versitygw to listen")
        yield S3Server(f"http://127.0.0.1:{port}", root, bucket)
    finally:
        stop_process(process)
        log.close()


def write_credentials(folder: Path, access: str = ACCESS_KEY, secret: str = SECRET_KEY) -> Path:
    """The two files a mounted Secret gives the worker (storage/target.py), written as the kubelet
    does: a new file renamed into place."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, value in (("access-key-id", access), ("secret-access-key", secret)):
        tmp = folder / f".{name}.tmp"
        tmp.write_text(value + "\n")
        tmp.replace(folder / name)
    return folder
