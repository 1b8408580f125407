"""`bookgen up`: one BookGenQueue spec -> Redis, worker pools, beat, Flower, /metrics, and the autoscaler.

The same spec (parse_queue), the same worker command and settings (resources.workers/common), and the
same Autoscaler/decide() as on Kubernetes; only the platform differs (local/platform.py).

Shutdown order matters: the autoscaler stops first (nothing starts or stops workers behind our
back), then every worker, beat and Flower get SIGTERM at once (warm shutdown: running tasks finish,
prefetched messages go back to Redis), stragglers are killed after the grace period, and Redis stops
last, so the warm shutdowns can still acknowledge and requeue. Redis fsyncs its append-only file
on SIGTERM: whatever was queued is there on the next `bookgen up` of the same state folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import secrets
import socket
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import redis as redis_py
from bookgen_worker.config import Settings, redact, settings_from_env
from bookgen_worker.metrics.workers import read_workers

from bookgen_operator.core.autoscaler.loop import Autoscaler, PoolStatus
from bookgen_operator.core.autoscaler.source import MetricsSource
from bookgen_operator.core.resources.common import app_env
from bookgen_operator.core.resources.exports import bucket_env
from bookgen_operator.core.resources.redis_memory import maxmemory_bytes
from bookgen_operator.core.resources.workers import initial_replicas, metrics_pool, worker_command
from bookgen_operator.core.spec import PoolSpec, QueueSpec
from bookgen_operator.local.platform import LocalPlatform
from bookgen_operator.local.recovery import requeue_unacked
from bookgen_operator.local.redis import (
    DEFAULT_PORT,
    LocalError,
    LocalRedis,
    pick_port,
    secret_file,
    start_local_redis,
    stop_local_redis,
)
from bookgen_operator.local.state import LOCK_FILE, write_connection
from bookgen_operator.local.supervisor import Supervisor
from bookgen_operator.local.view import PoolRow
from bookgen_operator.sources.redis_source import RedisSource

#: Variables a worker inherits from the spec (what resources.common.app_env gives a pod), not from the shell.
_SPEC_VARIABLES = ("BOOKGEN_SOFT_TIME_LIMIT", "BOOKGEN_TIME_LIMIT", "BOOKGEN_VISIBILITY_TIMEOUT",
                   "BOOKGEN_PREFETCH_MULTIPLIER", "BOOKGEN_MAX_TASKS_PER_CHILD", "PYTHONUNBUFFERED")
#: Shell variables that would contradict the local Redis URL.
_DROPPED = ("REDIS_HOST", "REDIS_PORT", "REDIS_DB", "REDIS_PASSWORD", "FLOWER_USER", "FLOWER_PASSWORD",
            "FLOWER_BASIC_AUTH", "BOOKGEN_METRICS_PORT", "BOOKGEN_POOL", "POD_NAME", "BOOKGEN_HEARTBEAT_FILE")


@dataclass
class UpOptions:
    state_dir: Path
    #: The environment of `bookgen up` (the command line's): workers, beat and Flower inherit it, less
    #: what would contradict the spec or the local Redis (_DROPPED).
    environ: Mapping[str, str]
    redis_port: int = DEFAULT_PORT
    flower_port: int = 5555
    metrics_port: int | None = None  # None: the spec's metrics.port
    grace: float = 60.0  # seconds a worker gets to finish its task after SIGTERM
    output_dir: Path | None = None  # None: $BOOKGEN_OUTPUT_DIR, else <state>/output


@dataclass
class Endpoints:
    redis: str = ""
    flower: str = ""
    flower_auth_file: str = ""
    metrics: str = ""
    output_dir: str = ""
    notes: list[str] = field(default_factory=list)


def spec_env(spec: QueueSpec) -> dict[str, str]:
    """The spec's settings as variables; a bucket of spec.exports.s3 too (its credentials come from this
    command's own environment: BOOKGEN_S3_CREDENTIALS_DIR, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY),
    while a claim or a volume means the output folder here."""
    env = {e["name"]: str(e["value"]) for e in app_env(spec) if "value" in e and e["name"] in _SPEC_VARIABLES}
    return {**env, **{e["name"]: str(e["value"]) for e in bucket_env(spec)}}


class LocalRuntime:
    def __init__(self, spec: QueueSpec, options: UpOptions, *, echo: Callable[[str], None] = print) -> None:
        self.spec = spec
        self.options = options
        self.echo = echo
        self.state_dir = options.state_dir.resolve()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir.chmod(0o700)  # passwords and the Redis data live here
        self.supervisor = Supervisor(self.state_dir)
        self.redis: LocalRedis | None = None
        self.redis_url = ""
        self.settings: Settings | None = None
        self.platform: LocalPlatform | None = None
        self.autoscaler: Autoscaler | None = None
        self.status: dict[str, PoolStatus] = {}
        #: Per pool, the replica counts it went through (first the count before its first change).
        self.scaling_steps: dict[str, list[int]] = {}
        self.endpoints = Endpoints()
        self.host = socket.gethostname()
        self._lock_fd: int | None = None
        self._client: redis_py.Redis | None = None
        self._env: dict[str, str] = {}

    # ------------------------------------------------------------------ start

    def _lock(self) -> None:
        fd = os.open(self.state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LocalError(f"another `bookgen up` is running with the state folder {self.state_dir}") from None
        self._lock_fd = fd

    def start(self) -> None:
        """Everything up to the first workers; on failure everything started so far is stopped."""
        # A bad BOOKGEN_* variable: its one-line ConfigError now, before anything is started.
        inherited = {k: v for k, v in self.options.environ.items() if k not in _DROPPED}
        settings_from_env({**inherited, **spec_env(self.spec), "REDIS_URL": "redis://127.0.0.1:6379/0"})
        self._lock()
        leftovers = self.supervisor.reap_leftovers()
        if leftovers:
            self.echo(f"stopped {len(leftovers)} process group(s) left over by a previous run")
        try:
            self._start_redis()
            self._start_services()
            self._start_workers()
        except BaseException:
            self.shutdown()
            raise

    def _start_redis(self) -> None:
        if self.spec.redis.managed:
            # Only an explicit spec.redis.maxmemory: no container limit here (local/redis.py).
            self.redis = start_local_redis(self.supervisor, self.state_dir, self.options.redis_port,
                                           env=self.options.environ,
                                           maxmemory=maxmemory_bytes({}, self.spec.redis.maxmemory))
            self.redis_url = self.redis.url
        else:
            # The password of an external Redis comes from the environment (on Kubernetes: its Secret).
            env = {"REDIS_URL": self.spec.redis.url, "REDIS_PASSWORD": self.options.environ.get("REDIS_PASSWORD", "")}
            self.redis_url = settings_from_env(env).redis_url
        self.endpoints.redis = redact(self.redis_url)
        # How `bookgen status`, `submit`, `env`... in this folder find this Redis (0600: the URL has the password).
        write_connection(self.state_dir, self.redis_url, pid=str(os.getpid()))
        output = self.options.output_dir or Path(self.options.environ.get("BOOKGEN_OUTPUT_DIR")
                                                 or self.state_dir / "output")
        output = output.resolve()
        output.mkdir(parents=True, exist_ok=True)
        self.endpoints.output_dir = str(output)
        bucket = self.spec.exports.s3
        if bucket is not None:
            self.endpoints.notes.append(
                f"books go to s3://{bucket.bucket}/{bucket.prefix} at {bucket.endpoint or 'AWS S3'} (the folder "
                "above is scratch; keys from BOOKGEN_S3_CREDENTIALS_DIR or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)")
        base = {k: v for k, v in self.options.environ.items() if k not in _DROPPED}
        self._env = {**base, **spec_env(self.spec), "REDIS_URL": self.redis_url, "BOOKGEN_OUTPUT_DIR": str(output)}
        self.settings = settings_from_env(self._env)
        self._client = redis_py.Redis.from_url(self.redis_url, socket_connect_timeout=5, socket_timeout=10)
        try:
            self._client.ping()
        except redis_py.exceptions.RedisError as exc:
            raise LocalError(f"cannot reach Redis at {redact(self.redis_url)}: {exc}") from None
        if self.redis is not None:  # our own Redis: no consumer of a previous run can be alive now
            requeued = requeue_unacked(self.settings)
            if requeued:
                self.echo(f"requeued {requeued} task(s) a previous run left delivered but unacknowledged")

    def _start_services(self) -> None:
        python = sys.executable
        if self.spec.beat.enabled:
            self.supervisor.start("beat", [python, "-m", "celery", "-A", "bookgen_worker.app", "beat", "-l", "INFO",
                                           "-s", str(self.state_dir / "beat-schedule")], self._env,
                                  labels={"kind": "beat"})
        if self.spec.flower.enabled:
            port = pick_port(self.options.flower_port, "Flower", "--flower-port")
            auth_file = self.state_dir / "flower-auth"
            auth, created = secret_file(auth_file, f"admin:{secrets.token_urlsafe(18)}")
            self.supervisor.start("flower", [python, "-m", "bookgen_worker.flower", "--port", str(port),
                                             "--address", "127.0.0.1", "--max-tasks", str(self.spec.flower.max_tasks)],
                                  {**self._env, "FLOWER_BASIC_AUTH": auth}, labels={"kind": "flower"})
            self.endpoints.flower = f"http://127.0.0.1:{port}"
            self.endpoints.flower_auth_file = str(auth_file)
            if created:  # shown once; afterwards only the file is named
                user, _, password = auth.partition(":")
                self.endpoints.notes.append(f"Flower login (saved in {auth_file}): user {user}, password {password}")
        self.metrics_port = pick_port(self.options.metrics_port if self.options.metrics_port is not None
                                      else self.spec.metrics.port, "the metrics endpoint", "--metrics-port")
        self.endpoints.metrics = f"http://127.0.0.1:{self.metrics_port}/metrics"

    def worker_launch(self, pool: PoolSpec, index: int, serve_metrics: bool) -> tuple[list[str], dict[str, str]]:
        argv = [sys.executable, "-m", *worker_command(pool)]
        argv[argv.index("-n") + 1] = f"{pool.name}-{index}@{self.host}"
        argv += ["-l", "INFO"]
        env = {
            **self._env,
            "BOOKGEN_POOL": pool.name,
            "POD_NAME": f"local-{pool.name}-{index}",
            "BOOKGEN_HEARTBEAT_FILE": str(self.state_dir / "heartbeat" / f"{pool.name}-{index}"),
            "BOOKGEN_METRICS_PORT": str(self.metrics_port) if serve_metrics else "off",
        }
        return argv, env

    def _busy(self) -> dict[str, int]:
        assert self._client is not None and self.settings is not None
        return {w.pod: w.busy for w in read_workers(self._client, self.settings, max_age=10)}

    def _start_workers(self) -> None:
        assert self.settings is not None and self._client is not None
        self.platform = LocalPlatform(
            self.supervisor, self.spec.pools, self.worker_launch, self._busy,
            events_path=self.state_dir / "events.jsonl", grace=self.options.grace,
            metrics_pool=metrics_pool(self.spec).name,
        )
        initial = {p.name: initial_replicas(self.spec, p) for p in self.spec.pools}
        asyncio.run(self.platform.start_pools(initial))
        if self.spec.autoscaling.enabled:
            source = self._source()
            self.autoscaler = Autoscaler(self.spec.pools, source, self.platform, on_decision=self._on_decision)

    def _source(self) -> MetricsSource:
        """Redis directly unless the spec asks for another source (same sources as on Kubernetes)."""
        assert self._client is not None and self.settings is not None
        scaling = self.spec.autoscaling
        if scaling.source == "prometheus":
            from bookgen_operator.sources.prometheus import PrometheusSource

            return PrometheusSource(scaling.prometheus_url)
        if scaling.source == "endpoint":
            from bookgen_operator.sources.endpoint import EndpointSource

            return EndpointSource(self.endpoints.metrics)
        return RedisSource(self._client, self.settings)  # auto: on one machine Redis is always at hand

    def _on_decision(self, status: PoolStatus) -> None:
        # The autoscaler itself logs each change it applies; here it is only remembered.
        self.status[status.pool] = status
        if status.scaled:
            self.scaling_steps.setdefault(status.pool, [status.current]).append(status.desired)

    # ------------------------------------------------------------------ run

    async def run(self, stop: asyncio.Event, *, duration: float | None = None,
                  on_tick: Callable[[], object] | None = None) -> None:
        """Housekeeping + one autoscaler round every poll interval until `stop` (or `duration` seconds)."""
        assert self.platform is not None
        interval = self.autoscaler.poll_interval if self.autoscaler else self.spec.autoscaling.poll_interval
        deadline = time.monotonic() + duration if duration is not None else None
        while not stop.is_set():
            self.platform.housekeep()
            self._check_services()
            if self.autoscaler is not None:
                await self.autoscaler.step()
            if on_tick is not None:
                on_tick()
            if deadline is not None and time.monotonic() >= deadline:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)

    def _check_services(self) -> None:
        child = self.redis.child if self.redis is not None else None
        if child is not None and not child.running:
            raise LocalError(f"redis-server exited with {child.returncode} (log: {child.log_path})")
        for name in ("beat", "flower"):
            child = self.supervisor.children.get(name)
            if child is not None and not child.running and child.stopping_since is None:
                self.echo(f"{name} exited with {child.returncode}; see {child.log_path}")
                self.supervisor.reap()

    # ------------------------------------------------------------------ stop

    def shutdown(self) -> list[str]:
        """Stop everything warm (see the module docstring). Returns the names that had to be killed."""
        killed: list[str] = []
        others = [n for n in self.supervisor.children if n != "redis"]
        workers = self.platform.all_workers() if self.platform else []
        if others:
            killed = self.supervisor.stop_all(self.options.grace, names=others)
        for child in workers:  # the record of how each worker ended (0 = a clean warm shutdown)
            assert self.platform is not None
            self.platform.record("exit", child, returncode=child.returncode, shutdown=True)
        if self.redis is not None:
            stop_local_redis(self.supervisor, self.redis)
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
        self.supervisor.stop_all(5)  # anything else still tracked
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        return killed

    @property
    def client(self) -> redis_py.Redis:
        assert self._client is not None
        return self._client

    def pool_rows(self) -> list[PoolRow]:
        """What the view shows per pool."""
        rows: list[PoolRow] = []
        for pool in self.spec.pools:
            status = self.status.get(pool.name)
            workers = self.platform.workers(pool.name) if self.platform else []
            stopping = self.platform.stopping(pool.name) if self.platform else []
            rows.append({
                "pool": pool.name, "replicas": len(workers), "stopping": len(stopping),
                "min": pool.min_replicas, "max": pool.max_replicas,
                "pending": status.pending if status else None, "in_flight": status.in_flight if status else None,
                "busy": status.busy_workers if status else None, "decision": status.reason if status else "",
                "scaled_ago": time.time() - status.last_scale_time if status and status.last_scale_time else None,
            })
        return rows


def pool_summary(rows: list[PoolRow]) -> str:
    return "; ".join(f"{r['pool']} {r['replicas']} (pending {r['pending']}, in flight {r['in_flight']})" for r in rows)
