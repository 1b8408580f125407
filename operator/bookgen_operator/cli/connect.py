"""Connection options shared by every sub-command, and the one place a command gets its Redis.

The Celery app is imported here, inside a function, not at module import: `bookgen --help` and
argument errors must work whatever the environment holds, and a bad variable (REDIS_PORT=abc)
must surface as the one-line ConfigError main() prints, not as a traceback while importing.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from bookgen_worker.config import Settings, redact, settings_from_env
from bookgen_worker.errors import RedisUnavailable

from .cluster import open_queue
from .cluster_args import add_cluster_options, queue_ref
from .target import DEFAULT_SOURCE, REDIS_ENV, Target, hint, resolve

if TYPE_CHECKING:
    from celery import Celery
    from rich.console import Console

OUTPUT_FORMATS = ("table", "json", "yaml")
#: Where connect() records the (redacted) Redis URL on the command's arguments, for errors raised later.
REDIS_SHOWN = "redis_shown"
#: Where main() keeps what a command opened and must close when it ends (a cluster queue's port-forward).
CLOSING = "closing"
#: Where target_settings() keeps the cluster queue it opened (cluster.QueueConnection), for later use.
QUEUE_CONNECTION = "queue_connection"


def add_connection_options(parser: argparse.ArgumentParser, *, top: bool = False, state_dir: bool = True) -> None:
    """`--redis-url` and `--state-dir`, before or after the sub-command (`bookgen --redis-url X status`
    and `bookgen status --redis-url X`). Sub-parsers default to SUPPRESS, so they never overwrite a
    value given before the sub-command with None."""
    default = None if top else argparse.SUPPRESS
    parser.add_argument("--redis-url", default=default, metavar="URL",
                        help="the Redis of the system to talk to (default: see --state-dir)")
    if state_dir:
        parser.add_argument("--state-dir", type=Path, default=default, metavar="DIR",
                            help="the state folder of a `bookgen up` (default: $REDIS_URL, else "
                                 "$BOOKGEN_STATE_DIR, else ./.bookgen, else redis://localhost:6379/0)")
    add_cluster_options(parser, top=top)


def add_output_option(parser: argparse.ArgumentParser, *, json_alias: bool = False) -> None:
    parser.add_argument("-o", "--output", choices=OUTPUT_FORMATS, default="table",
                        help="table for people (default), json or yaml for programs")
    if json_alias:
        parser.add_argument("--json", dest="output", action="store_const", const="json", help="same as -o json")


def closing(args: argparse.Namespace) -> contextlib.ExitStack:
    """What the command opened and main() closes when it ends (a handler called without main(): at exit)."""
    stack = getattr(args, CLOSING, None)
    if stack is None:
        stack = contextlib.ExitStack()
        setattr(args, CLOSING, stack)
    return stack


def target_settings(args: argparse.Namespace) -> tuple[Target, Settings]:
    """The system this command means, and the settings to reach it (ConfigError: one line). A cluster
    queue (--queue) is opened here: its port-forward lasts until the command ends."""
    target = resolve(getattr(args, "redis_url", None), getattr(args, "state_dir", None), args.environ,
                     cluster=queue_ref(args))
    env = dict(args.environ)
    if target.cluster is not None:
        queue = closing(args).enter_context(open_queue(target.cluster, args.environ))
        setattr(args, QUEUE_CONNECTION, queue)
        if queue.note:
            print(f"bookgen: note: {queue.note}", file=sys.stderr)
        env.update(queue.settings_env)  # the key prefix and priority lists the queue's workers use
        target = Target(queue.redis_url, queue.shown, cluster=target.cluster)
    if target.redis_url is not None:
        for name in REDIS_ENV:  # the URL given or recorded carries its own password
            env.pop(name, None)
        env["REDIS_URL"] = target.redis_url
    return target, settings_from_env(env)


def connect(args: argparse.Namespace) -> tuple[Celery, Settings]:
    """The app pointed at the chosen Redis, after checking it answers (its redacted URL is kept in
    `args.redis_shown` for the one-line error of a failure later in the command)."""
    from bookgen_worker.app import app, configure_app
    from bookgen_worker.redis_client import check_reachable

    target, settings = target_settings(args)
    setattr(args, REDIS_SHOWN, target.source if target.cluster else redact(settings.redis_url))
    configure_app(app, settings)
    try:
        check_reachable(settings)
    except RedisUnavailable as exc:
        queue = getattr(args, QUEUE_CONNECTION, None)
        if queue is not None:  # what the port-forward heard says more than a closed connection
            problem = queue.forward_problem() or exc
            raise RedisUnavailable(f"cannot reach the Redis of {queue.shown}: {problem}") from None
        raise RedisUnavailable(f"{exc} ({hint(target)})") from None
    if target.source == DEFAULT_SOURCE:
        # A Redis answers at the default address, but it may not be the one `bookgen up` runs.
        print(f"bookgen: note: using {redact(settings.redis_url)}, the default, as nothing named a system "
              "(see `bookgen env`)", file=sys.stderr)
    return app, settings


def dump(data: object, fmt: str) -> str:
    """JSON or YAML text of plain data (dicts, lists, strings, numbers)."""
    if fmt == "yaml":
        import yaml

        return str(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    import json

    return json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n"


def console() -> Console:
    """A rich Console; when stdout is not a terminal, wide enough that no table is cut or wrapped."""
    from rich.console import Console

    if sys.stdout.isatty():
        return Console()
    return Console(width=1000, soft_wrap=False)
