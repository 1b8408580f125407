"""`bookgen up` as a real process for tests: its Redis, its workers (with the probe tasks), its events."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from tests.support.waiting import wait_for
from tests.support.workers import FAST_TEST_ENV, REPO_ROOT, stop_process

BOOKGEN = str(Path(sys.executable).parent / "bookgen")
PROBE = "bookgen.probe.record"


def spec_yaml(*, content_max: int = 4, scale_down_window: float = 3, worker: Mapping[str, Any] | None = None,
              poll: float = 1.0) -> str:
    """A small spec: a content pool that scales, and one solo worker for everything else."""
    body = {
        "apiVersion": "bookgen.io/v1alpha1", "kind": "BookGenQueue", "metadata": {"name": "test"},
        "spec": {
            "beat": {"enabled": False}, "flower": {"enabled": False},
            "autoscaling": {"pollIntervalSeconds": poll, "scaleDownWindowSeconds": scale_down_window,
                            "targetPerSlot": 5},
            "pools": [
                {"name": "content", "queues": ["content_generation", "high_priority"], "concurrency": 2,
                 "minReplicas": 1, "maxReplicas": content_max},
                {"name": "monitoring", "queues": ["monitoring", "validation", "export", "default"],
                 "concurrency": 1, "poolType": "solo", "minReplicas": 1, "maxReplicas": 1},
            ],
        },
    }
    if worker:
        body["spec"]["worker"] = dict(worker)
    return yaml.safe_dump(body)


@dataclass
class Up:
    """One `bookgen up --no-view` process and what it started."""

    state_dir: Path
    process: subprocess.Popen[str]
    out_path: Path
    _client: redis.Redis | None = field(default=None)
    _client_url: str = ""

    def output(self) -> str:
        return self.out_path.read_text(errors="replace")

    def redis_port(self) -> int:
        text = (self.state_dir / "redis.conf").read_text()
        return int(re.search(r"^port (\d+)$", text, re.M).group(1))  # type: ignore[union-attr]

    def redis_url(self) -> str:
        password = (self.state_dir / "redis-password").read_text().strip()
        return f"redis://:{password}@127.0.0.1:{self.redis_port()}/0"

    @property
    def client(self) -> redis.Redis:
        url = self.redis_url()  # a restarted `bookgen up` may have picked another port
        if self._client is None or url != self._client_url:
            if self._client is not None:
                self._client.close()
            self._client, self._client_url = redis.Redis.from_url(url), url
        return self._client

    def events(self) -> list[dict[str, Any]]:
        path = self.state_dir / "events.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def workers(self, pool: str) -> int:
        """Workers of `pool` started and not yet asked to stop (or dead), per the platform's events."""
        live: set[str] = set()
        for e in self.events():
            if e["pool"] != pool:
                continue
            if e["event"] == "start":
                live.add(e["pod"])
            elif e["event"] in ("stop", "crash", "exit", "kill"):
                live.discard(e["pod"])
        return len(live)

    def registered(self) -> list[dict[str, Any]]:
        """Fresh entries of the worker registry."""
        now = time.time()
        out = []
        for raw in self.client.hvals("bookgen:workers"):
            info = json.loads(raw)
            if now - info["updated_at"] <= 10:
                out.append(info)
        return out

    def wait_ready(self, workers: int, timeout: float = 90) -> None:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"bookgen up exited with {self.process.returncode}:\n{self.output()[-3000:]}")
            if not (self.state_dir / "redis-password").exists() or not (self.state_dir / "redis.conf").exists():
                return False
            try:
                return len(self.registered()) >= workers
            except redis.exceptions.RedisError:
                return False

        wait_for(ready, timeout=timeout, interval=0.2, what=f"{workers} workers of bookgen up to register")

    def send_probes(self, labels: list[str], seconds: float, queue: str = "content_generation") -> None:
        from bookgen_worker.app import app, configure_app
        from bookgen_worker.config import settings_from_env

        configure_app(app, settings_from_env({**FAST_TEST_ENV, "REDIS_URL": self.redis_url()}))
        with app.producer_or_acquire() as producer:
            for label in labels:
                app.send_task(PROBE, args=[label, seconds], queue=queue, producer=producer)

    def done(self) -> dict[str, int]:
        return {k.decode(): int(v) for k, v in self.client.hgetall("probe:done").items()}

    def probe_events(self) -> list[dict[str, Any]]:
        return [json.loads(raw) for raw in self.client.lrange("probe:events", 0, -1)]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 90) -> int:
        if self._client is not None:
            self._client.close()
            self._client = None
        return stop_process(self.process, sig, timeout)


def start_up(state_dir: Path, spec: str, *, extra_env: Mapping[str, str] | None = None,
             args: list[str] | None = None, name: str = "up") -> Up:
    state_dir.mkdir(parents=True, exist_ok=True)
    spec_file = state_dir.parent / f"{state_dir.name}-spec.yaml"
    spec_file.write_text(spec)
    env = {
        **os.environ, **FAST_TEST_ENV,
        "BOOKGEN_EXTRA_TASK_MODULES": "tests.support.probe_tasks",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])),
        **(extra_env or {}),
    }
    out_path = state_dir.parent / f"{state_dir.name}-{name}.out"
    with open(out_path, "w") as out:
        process = subprocess.Popen(
            [BOOKGEN, "up", "-f", str(spec_file), "--state-dir", str(state_dir), "--no-view", "--redis-port", "0",
             "--flower-port", "0", "--metrics-port", "0", *(args or [])],
            env=env, stdout=out, stderr=subprocess.STDOUT, text=True, cwd=state_dir.parent,
        )
    return Up(state_dir, process, out_path)


@pytest.fixture
def up_factory(tmp_path: Path) -> Iterator[Any]:
    started: list[Up] = []

    def factory(spec: str, **kwargs: Any) -> Up:
        up = start_up(tmp_path / "state", spec, **kwargs)
        started.append(up)
        return up

    yield factory
    for up in started:
        up.stop()
