"""Which BookGen system a command talks to: the Redis URL, and where it came from.

`bookgen up` writes `<state folder>/connection.json` (mode 0600) with its Redis URL, so every other
command can find it without the user copying a generated password around. The order, first wins:

1. `--redis-url`            (this command only)
2. `--state-dir DIR`        (this command only)
3. `--queue NAME` (with `-n`, `--context`, `--kubeconfig`): a BookGenQueue on a cluster, its Redis
   reached through the API server (cli/cluster.py); this command only
4. `REDIS_URL` or `REDIS_HOST`/`REDIS_PORT`/... in the environment (what workers and Kubernetes use)
5. `BOOKGEN_STATE_DIR`      (what `eval "$(bookgen env)"` sets)
6. `./.bookgen`             (the folder `bookgen up` uses by default), if it exists
7. `redis://localhost:6379/0`

Explicit beats discovered: a flag beats the environment, the environment beats the current folder.
Two flags that name different systems (`--queue` with `--redis-url` or `--state-dir`) are an error,
not a silent choice. The source is kept so that a command that reaches nothing can say which system
it tried.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bookgen_worker.config import ConfigError

from bookgen_operator.local.state import CONNECTION_FILE, LOCK_FILE

from .cluster import QueueRef

STATE_DIR_ENV = "BOOKGEN_STATE_DIR"
DEFAULT_STATE_DIR = Path(".bookgen")
#: Variables that, when set, say "this Redis" as explicitly as REDIS_URL does.
REDIS_ENV = ("REDIS_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_DB", "REDIS_PASSWORD")
DEFAULT_SOURCE = "the default"
POINT_ELSEWHERE = "point elsewhere with --redis-url URL, --state-dir DIR, REDIS_URL or BOOKGEN_STATE_DIR"


@dataclass(frozen=True)
class Target:
    """`redis_url` None: take it from the environment as workers do (REDIS_URL, REDIS_HOST, ...)."""

    redis_url: str | None
    source: str  # for messages: "--redis-url", "REDIS_URL", "state folder /x/.bookgen", "the default"
    state_dir: Path | None = None
    #: A queue on a cluster (--queue): its Redis URL is known once a port-forward is open (connect.py).
    cluster: QueueRef | None = None


def read_connection(state_dir: Path) -> dict[str, str]:
    path = state_dir / CONNECTION_FILE
    if not state_dir.is_dir():
        raise ConfigError(f"the state folder {state_dir} does not exist; start `bookgen up` there first, or "
                          f"{POINT_ELSEWHERE}")
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{state_dir} has no {CONNECTION_FILE}: no `bookgen up` has run with this state folder "
                          f"yet; start one, or {POINT_ELSEWHERE}") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("redis_url"), str):
        raise ConfigError(f"{path} does not name a Redis URL; start `bookgen up` again to rewrite it")
    return data


def up_running(state_dir: Path) -> bool:
    """Whether a `bookgen up` holds the state folder's lock right now."""
    try:
        fd = os.open(state_dir / LOCK_FILE, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def default_state_dir(env: Mapping[str, str]) -> Path:
    """Where `bookgen up` keeps its state when not told: $BOOKGEN_STATE_DIR, else ./.bookgen."""
    raw = env.get(STATE_DIR_ENV, "").strip()
    return Path(raw) if raw else DEFAULT_STATE_DIR


def resolve(redis_url: str | None, state_dir: Path | None, env: Mapping[str, str],
            cwd: Path | None = None, cluster: QueueRef | None = None) -> Target:
    """The system a command should talk to (see the module docstring for the order)."""
    if cluster is not None and (redis_url or state_dir is not None):
        other = "--redis-url" if redis_url else "--state-dir"
        raise ConfigError(f"--queue {cluster.name} names a queue on a cluster and {other} another system; give one")
    if redis_url:
        return Target(redis_url, "--redis-url")
    if state_dir is not None:
        return _from_state(state_dir, "--state-dir")
    if cluster is not None:
        return Target(None, f"--queue {cluster.name}", cluster=cluster)
    if any(env.get(name, "").strip() for name in REDIS_ENV):
        name = "REDIS_URL" if env.get("REDIS_URL", "").strip() else "REDIS_HOST/REDIS_PORT"
        return Target(None, name)
    if env.get(STATE_DIR_ENV, "").strip():
        return _from_state(Path(env[STATE_DIR_ENV].strip()), STATE_DIR_ENV)
    here = (cwd or Path.cwd()) / DEFAULT_STATE_DIR
    if (here / CONNECTION_FILE).is_file():
        return _from_state(here, "./.bookgen")
    return Target(None, DEFAULT_SOURCE)


def _from_state(state_dir: Path, how: str) -> Target:
    folder = state_dir.resolve()
    data = read_connection(folder)
    return Target(data["redis_url"], f"state folder {folder} ({how})", folder)


def hint(target: Target) -> str:
    """What to say after "cannot reach Redis at ...": where the URL came from and what to do."""
    if target.cluster is not None:
        return f"{target.source}: the queue's Redis pod may have gone; see kubectl get bookgenqueues"
    if target.source == DEFAULT_SOURCE:
        return f"the default, as nothing named a system: start `bookgen up` here, or {POINT_ELSEWHERE}"
    if target.state_dir is not None and not up_running(target.state_dir):
        return f"from {target.source}, where no `bookgen up` is running: start it, or {POINT_ELSEWHERE}"
    return f"from {target.source}; {POINT_ELSEWHERE}"
