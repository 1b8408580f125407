"""Real `celery worker` processes for integration tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .waiting import wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]

#: Settings that make retries and restores fast enough for tests; everything else stays production.
FAST_TEST_ENV = {
    "BOOKGEN_RETRY_BACKOFF_BASE": "0.2",
    "BOOKGEN_RETRY_BACKOFF_MAX": "1",
    "BOOKGEN_RETRY_JITTER": "false",
}


def stop_process(process: subprocess.Popen[Any], sig: int = signal.SIGTERM, timeout: float = 30) -> int:
    """Signal a process and wait for it; kill it when it outlives `timeout`. Returns its exit code."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return int(process.returncode)


@dataclass
class WorkerProcess:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def child_pids(self) -> list[int]:
        """The prefork pool children (the processes that run tasks)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return [int(pid) for pid in children.read_text().split()]
        except FileNotFoundError:
            return []

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        stop_process(self.process, sig, timeout)


def start_worker(
    *,
    redis_url: str,
    queues: Sequence[str],
    name: str,
    workdir: Path,
    concurrency: int = 1,
    pool: str = "prefork",
    extra_env: Mapping[str, str] | None = None,
    app: str = "bookgen_worker.app",
    with_probe_tasks: bool = True,
    host: str = "test",
) -> WorkerProcess:
    log_path = workdir / f"worker-{name}.log"
    env = {**os.environ, **FAST_TEST_ENV, "REDIS_URL": redis_url, **(extra_env or {})}
    if with_probe_tasks:
        env["BOOKGEN_EXTRA_TASK_MODULES"] = "tests.support.probe_tasks"
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH", "")]))
    env.setdefault("BOOKGEN_OUTPUT_DIR", str(workdir / "output"))
    command = [
        sys.executable, "-m", "celery", "-A", app, "worker",
        "-Q", ",".join(queues), "-c", str(concurrency), "-P", pool,
        "-n", f"{name}@{host}", "--without-gossip", "--without-mingle", "-l", "INFO",
        "-f", str(log_path),
    ]
    log_path.touch()
    process = subprocess.Popen(command, env=env, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    worker = WorkerProcess(name=name, process=process, log_path=log_path)

    def ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"worker {name} exited with {process.returncode}:\n{worker.log()[-3000:]}")
        return " ready." in worker.log()

    wait_for(ready, timeout=60, what=f"worker {name} to be ready")
    return worker


@contextmanager
def running_worker(**kwargs: object) -> Iterator[WorkerProcess]:
    worker = start_worker(**kwargs)  # type: ignore[arg-type]
    try:
        yield worker
    finally:
        worker.stop()
