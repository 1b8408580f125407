"""`bookgen env`: shell lines that point this shell at a `bookgen up`: `eval "$(bookgen env)"`.

It prints the full Redis URL, password included, because the user asks for exactly that; the URL
is never printed anywhere else (logs and messages show it redacted).
"""

from __future__ import annotations

import argparse
import shlex
import sys

from bookgen_worker.errors import BookGenError

from .cluster_args import queue_ref
from .target import REDIS_ENV, STATE_DIR_ENV, resolve, up_running


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    env = subparsers.add_parser(
        "env", help="print `export` lines for a shell to reach a `bookgen up`: eval \"$(bookgen env)\"",
        description="Prints BOOKGEN_STATE_DIR and REDIS_URL (with its password) of the system found as for "
                    "any other command: --redis-url, --state-dir, $BOOKGEN_STATE_DIR, ./.bookgen.")
    env.add_argument("--unset", action="store_true", help="print the lines that undo it instead")
    env.set_defaults(handler=print_env)


def env_lines(redis_url: str, state_dir: str | None) -> list[str]:
    lines = [f"export {STATE_DIR_ENV}={shlex.quote(state_dir)}"] if state_dir else []
    # REDIS_URL too, so celery, redis-cli -u and scripts in this shell reach the same Redis.
    return [*lines, f"export REDIS_URL={shlex.quote(redis_url)}"]


def print_env(args: argparse.Namespace) -> int:
    if args.unset:
        print(f"unset {STATE_DIR_ENV} REDIS_URL")
        return 0
    if queue_ref(args) is not None:
        raise BookGenError("`bookgen env` points a shell at a `bookgen up`; a cluster queue's Redis is reached "
                           "through a port-forward that lasts one command: give -n NS --queue NAME to each command")
    # The environment's REDIS_URL is what this would print; look for a state folder instead.
    env = {k: v for k, v in args.environ.items() if k not in REDIS_ENV}
    target = resolve(getattr(args, "redis_url", None), getattr(args, "state_dir", None), env)
    if target.redis_url is None:
        raise BookGenError("no `bookgen up` found: ./.bookgen has no connection.json and neither --state-dir "
                           f"nor {STATE_DIR_ENV} names a state folder; start `bookgen up` first")
    if target.state_dir is not None and not up_running(target.state_dir):
        print(f"bookgen: note: no `bookgen up` is running with {target.state_dir} right now", file=sys.stderr)
    sys.stdout.write("\n".join(env_lines(target.redis_url, str(target.state_dir) if target.state_dir else None)) + "\n")
    return 0
