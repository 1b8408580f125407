"""Worker configuration, read once from the environment.

Everything BookGen's original design fixes (time limits, retry figures, prefetch, ...) is a default here and can be
overridden by an environment variable, so the operator and `bookgen up` configure workers the same
way: by setting variables on the process.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit, urlunsplit

if TYPE_CHECKING:
    from .storage.target import ExportTarget

#: One Redis list per transport priority kombu knows (0..9), so every public level but the lowest two
#: is its own list (see queues.transport_priority). kombu's own default, 0,3,6,9, folded the public
#: 0..10 onto four levels; its lists are among these, so messages queued under it are still served.
DEFAULT_PRIORITY_STEPS: tuple[int, ...] = tuple(range(10))
DEFAULT_SEPARATOR = "\x06\x16"


class ConfigError(ValueError):
    """A configuration value a user set is unusable; the message says which and why."""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff: base * factor**n seconds, capped, with full jitter when enabled."""

    max_retries: int = 3
    backoff_base: float = 60.0
    backoff_factor: float = 2.0
    backoff_max: float = 600.0
    jitter: bool = True

    def merged(self, overrides: Mapping[str, object]) -> RetryPolicy:
        known = {f for f in self.__dataclass_fields__}
        unknown = set(overrides) - known
        if unknown:
            raise ConfigError(f"unknown retry setting(s) {sorted(unknown)}; known: {sorted(known)}")
        values = {**self.__dict__, **overrides}
        return RetryPolicy(
            max_retries=int(values["max_retries"]),
            backoff_base=float(values["backoff_base"]),
            backoff_factor=float(values["backoff_factor"]),
            backoff_max=float(values["backoff_max"]),
            jitter=bool(values["jitter"]),
        )


@dataclass(frozen=True)
class Settings:
    redis_url: str = "redis://localhost:6379/0"
    result_backend_url: str = ""
    priority_steps: tuple[int, ...] = DEFAULT_PRIORITY_STEPS
    priority_separator: str = DEFAULT_SEPARATOR
    global_keyprefix: str = ""
    soft_time_limit: float = 3000.0
    time_limit: float = 3600.0
    # Must exceed the hard time limit and every countdown, or a slow task is delivered twice.
    visibility_timeout: float = 7200.0
    # How often a live worker sweeps for messages whose consumer died (kombu's own defaults: a scan
    # every 10 s * 10 calls). A killed worker's tasks come back after visibility_timeout plus this.
    unacked_restore_interval: float = 10.0
    unacked_restore_throttle: int = 10
    result_expires: float = 86400.0
    prefetch_multiplier: int = 1
    max_tasks_per_child: int = 1000
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # Per task type ("generation", "validation", "export", "monitoring", or a task name).
    retry_overrides: Mapping[str, RetryPolicy] = field(default_factory=dict)
    output_dir: Path = Path("output")
    #: Where finished files go (storage/target.py): the output folder itself, or a bucket.
    exports: ExportTarget = field(default_factory=lambda: _local_target())
    generator: str = "offline"
    # Seconds each offline text takes, to stand in for an LLM's latency (the demo uses it so the
    # pools have work to scale for); 0 in production, where the offline generator is a fallback.
    offline_seconds: float = 0.0
    llm_base_url: str = ""
    llm_model: str = ""
    llm_api_key: str = field(default="", repr=False)  # never printed with the settings
    llm_timeout: float = 60.0
    queue_stats_interval: float = 5.0
    # The outbox sweep of book jobs (jobs/outbox.py): how often beat runs it, and how long a step's
    # message may wait unpublished before it counts as lost. A sender publishes within milliseconds,
    # so the age only needs to cover a slow broker, not the work itself.
    job_sweep_interval: float = 30.0
    job_sweep_age: float = 30.0
    heartbeat_file: Path | None = None
    # Task events cost 3 PUBLISH per task and only Flower reads them; Flower turns them on in every
    # worker by itself (its enable_events remote command), so they are off unless asked for here.
    task_events: bool = False
    # The STARTED state costs a result write (with the GET Celery makes before it) per task, and
    # nothing here reads it.
    track_started: bool = False

    @property
    def backend_url(self) -> str:
        return self.result_backend_url or self.redis_url

    def retry_for(self, task_name: str, task_type: str) -> RetryPolicy:
        return self.retry_overrides.get(task_name) or self.retry_overrides.get(task_type) or self.retry

    def transport_options(self) -> dict[str, object]:
        options: dict[str, object] = {
            "visibility_timeout": self.visibility_timeout,
            "priority_steps": list(self.priority_steps),
            "sep": self.priority_separator,
            "queue_order_strategy": "priority",
            "unacked_restore_interval": self.unacked_restore_interval,
            "unacked_restore_throttle": self.unacked_restore_throttle,
            # kombu leaves the broker's sockets without timeouts, and a read that never returns hangs
            # the worker for good (celery#4556, celery#1221). Seen on the real node: a worker that
            # connected while Redis's pod was becoming ready blocked for ever in redis-py's
            # closed-socket check (a recv(MSG_PEEK) on a blocking socket) and looked alive, consuming
            # nothing, until its liveness probe restarted it minutes later. With a timeout the read
            # fails, kombu reconnects, and work goes on. No command of ours takes a fraction of it.
            "socket_timeout": BROKER_SOCKET_TIMEOUT,
            "socket_connect_timeout": BROKER_CONNECT_TIMEOUT,
            # A peer that vanished without a reset (a node lost) is noticed on idle connections too.
            "socket_keepalive": True,
        }
        if self.global_keyprefix:
            options["global_keyprefix"] = self.global_keyprefix
        return options


def _local_target() -> ExportTarget:
    from .storage.target import ExportTarget

    return ExportTarget()


#: Seconds a broker socket read or connect may take (see transport_options).
BROKER_SOCKET_TIMEOUT = 30.0
BROKER_CONNECT_TIMEOUT = 5.0


def redis_url_from_env(env: Mapping[str, str]) -> str:
    """REDIS_URL wins; otherwise REDIS_HOST/PORT/DB/PASSWORD, as BookGen has always read them."""
    url = env.get("REDIS_URL", "").strip()
    password = env.get("REDIS_PASSWORD", "")
    if url:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ConfigError(f"REDIS_URL must start with redis://, rediss:// or unix:// (got {redact(url)})")
        if password and not parts.password and parts.scheme != "unix":
            netloc = f":{quote(password, safe='')}@{parts.hostname}"
            if parts.port:
                netloc += f":{parts.port}"
            url = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
        return url
    host = env.get("REDIS_HOST", "localhost")
    port = _int(env, "REDIS_PORT", 6379)
    db = _int(env, "REDIS_DB", 0)
    auth = f":{quote(password, safe='')}@" if password else ""
    return f"redis://{auth}{host}:{port}/{db}"


def redact(url: str) -> str:
    """The URL with any password replaced, for messages and logs."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def settings_from_env(env: Mapping[str, str] | None = None) -> Settings:
    from .storage.target import target_from_env  # imports ConfigError from here

    env = os.environ if env is None else env
    retry = RetryPolicy(
        max_retries=_int(env, "BOOKGEN_MAX_RETRIES", 3),
        backoff_base=_float(env, "BOOKGEN_RETRY_BACKOFF_BASE", 60.0),
        backoff_factor=_float(env, "BOOKGEN_RETRY_BACKOFF_FACTOR", 2.0),
        backoff_max=_float(env, "BOOKGEN_RETRY_BACKOFF_MAX", 600.0),
        jitter=_bool(env, "BOOKGEN_RETRY_JITTER", True),
    )
    overrides_raw = env.get("BOOKGEN_RETRY_OVERRIDES", "").strip()
    overrides: dict[str, RetryPolicy] = {}
    if overrides_raw:
        try:
            parsed = json.loads(overrides_raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"BOOKGEN_RETRY_OVERRIDES is not valid JSON: {exc.msg}") from None
        if not isinstance(parsed, dict) or not all(isinstance(v, dict) for v in parsed.values()):
            raise ConfigError('BOOKGEN_RETRY_OVERRIDES must be an object like {"export": {"max_retries": 5}}')
        overrides = {name: retry.merged(values) for name, values in parsed.items()}
    steps = _int_tuple(env, "BOOKGEN_PRIORITY_STEPS", DEFAULT_PRIORITY_STEPS)
    settings = Settings(
        redis_url=redis_url_from_env(env),
        result_backend_url=env.get("BOOKGEN_RESULT_BACKEND", ""),
        priority_steps=steps,
        priority_separator=env.get("BOOKGEN_PRIORITY_SEPARATOR", DEFAULT_SEPARATOR),
        global_keyprefix=env.get("BOOKGEN_REDIS_KEYPREFIX", ""),
        soft_time_limit=_float(env, "BOOKGEN_SOFT_TIME_LIMIT", 3000.0),
        time_limit=_float(env, "BOOKGEN_TIME_LIMIT", 3600.0),
        visibility_timeout=_float(env, "BOOKGEN_VISIBILITY_TIMEOUT", 7200.0),
        unacked_restore_interval=_float(env, "BOOKGEN_UNACKED_RESTORE_INTERVAL", 10.0),
        unacked_restore_throttle=_int(env, "BOOKGEN_UNACKED_RESTORE_THROTTLE", 10),
        result_expires=_float(env, "BOOKGEN_RESULT_EXPIRES", 86400.0),
        prefetch_multiplier=_int(env, "BOOKGEN_PREFETCH_MULTIPLIER", 1),
        max_tasks_per_child=_int(env, "BOOKGEN_MAX_TASKS_PER_CHILD", 1000),
        retry=retry,
        retry_overrides=overrides,
        output_dir=Path(env.get("BOOKGEN_OUTPUT_DIR", "output")),
        exports=target_from_env(env),
        generator=env.get("BOOKGEN_GENERATOR", "offline"),
        offline_seconds=_float(env, "BOOKGEN_OFFLINE_SECONDS", 0.0),
        llm_base_url=env.get("BOOKGEN_LLM_BASE_URL", ""),
        llm_model=env.get("BOOKGEN_LLM_MODEL", ""),
        llm_api_key=env.get("BOOKGEN_LLM_API_KEY", ""),
        llm_timeout=_float(env, "BOOKGEN_LLM_TIMEOUT", 60.0),
        queue_stats_interval=_float(env, "BOOKGEN_QUEUE_STATS_INTERVAL", 5.0),
        job_sweep_interval=_float(env, "BOOKGEN_JOB_SWEEP_INTERVAL", 30.0),
        job_sweep_age=_float(env, "BOOKGEN_JOB_SWEEP_AGE", 30.0),
        heartbeat_file=Path(env["BOOKGEN_HEARTBEAT_FILE"]) if env.get("BOOKGEN_HEARTBEAT_FILE") else None,
        task_events=_bool(env, "BOOKGEN_TASK_EVENTS", False),
        track_started=_bool(env, "BOOKGEN_TRACK_STARTED", False),
    )
    validate(settings)
    return settings


def validate(settings: Settings) -> None:
    if settings.soft_time_limit >= settings.time_limit:
        raise ConfigError("the soft time limit must be below the hard time limit")
    if settings.visibility_timeout <= settings.time_limit:
        raise ConfigError(
            "BOOKGEN_VISIBILITY_TIMEOUT must exceed the hard time limit, or running tasks are delivered twice"
        )
    if not settings.priority_steps or list(settings.priority_steps) != sorted(set(settings.priority_steps)):
        raise ConfigError("BOOKGEN_PRIORITY_STEPS must be distinct integers in ascending order, e.g. 0,3,6,9")
    if settings.priority_steps[0] != 0 or settings.priority_steps[-1] > 9:
        raise ConfigError("BOOKGEN_PRIORITY_STEPS must start at 0 and stay within 0..9")
    if settings.generator not in ("offline", "openai"):
        raise ConfigError(f"BOOKGEN_GENERATOR must be 'offline' or 'openai' (got {settings.generator!r})")
    if not 0 <= settings.offline_seconds <= 600:
        raise ConfigError(f"BOOKGEN_OFFLINE_SECONDS must be between 0 and 600 (got {settings.offline_seconds:g})")
    if settings.job_sweep_interval <= 0:
        raise ConfigError(f"BOOKGEN_JOB_SWEEP_INTERVAL must be above 0 (got {settings.job_sweep_interval:g})")
    if settings.job_sweep_age < 0:
        raise ConfigError(f"BOOKGEN_JOB_SWEEP_AGE cannot be negative (got {settings.job_sweep_age:g})")
    if settings.generator == "openai" and not (settings.llm_base_url and settings.llm_model):
        raise ConfigError("BOOKGEN_GENERATOR=openai needs BOOKGEN_LLM_BASE_URL and BOOKGEN_LLM_MODEL")


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number (got {raw!r})") from None


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number (got {raw!r})") from None


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false (got {raw!r})")


def _int_tuple(env: Mapping[str, str], name: str, default: tuple[int, ...]) -> tuple[int, ...]:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return tuple(int(part) for part in raw.split(","))
    except ValueError:
        raise ConfigError(f"{name} must be comma-separated whole numbers (got {raw!r})") from None
