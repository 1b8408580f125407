"""The `bookgen` command line.

Each sub-command group lives in its own module exposing `register(subparsers)`: jobs and dead letters
(jobs.py, dlq.py), a job's books (files.py: files, fetch), the queues (status.py), the shell
(shellenv.py), the system on this machine (up.py: up, demo) and the manifests for Kubernetes
(render.py). Errors meant for the user (bad input, an
unreachable Redis, a bad spec, a bad configuration variable) are printed as one line with exit
status 2, never as a traceback. Nothing here builds the Celery app or reads the configuration at
import: `bookgen --help` works whatever the environment holds. main() reads the environment once and
hands it to the command as `args.environ`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from bookgen_worker.config import ConfigError
from bookgen_worker.errors import BookGenError

from bookgen_operator.cli import dlq, files, jobs, render, shellenv, status, up
from bookgen_operator.cli.cluster_args import given
from bookgen_operator.cli.connect import REDIS_SHOWN, add_connection_options, closing

#: Modules that contribute sub-commands, in the order `bookgen --help` lists them.
COMMAND_MODULES = (jobs, files, dlq, status, shellenv, up, render)
#: Sub-commands that talk to no running system, or bring their own (`up` starts its Redis).
OFFLINE_COMMANDS = ("render", "up", "demo")
DEBUG_ENV = "BOOKGEN_DEBUG"


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("bookgen-queue-operator")
    except PackageNotFoundError:
        return "unknown (not installed)"


class _Version(argparse.Action):
    """argparse's version action, but reading the package metadata only when asked."""

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        print(f"bookgen {version()}")
        parser.exit()


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error: `bookgen dlq show: error: ... (see bookgen dlq show --help)`.
    Sub-parsers are made of the same class (argparse's default), so every level behaves alike."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _leaves(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    out: list[tuple[str, argparse.ArgumentParser]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out += [(name, sub)] if not any(isinstance(a, argparse._SubParsersAction) for a in sub._actions) \
                    else [(name, leaf) for _, leaf in _leaves(sub)]
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="bookgen", description="BookGen queue system: jobs, queues, local runtime.")
    parser.add_argument("--version", action=_Version, nargs=0, help="print the version and exit")
    add_connection_options(parser, top=True)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        module.register(subparsers)
    for name, leaf in _leaves(parser):
        if name not in OFFLINE_COMMANDS:
            add_connection_options(leaf)
    return parser


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    environ = args.environ = os.environ  # the one read of the environment: commands take it from args
    try:
        with closing(args):  # a cluster queue's port-forward ends with the command
            if args.command in OFFLINE_COMMANDS and given(args):
                own = " (its own -n goes after it: bookgen render -n NS -f FILE)" if args.command == "render" else ""
                raise ValueError(f"{', '.join(given(args))}: for a queue on a cluster, and `bookgen {args.command}` "
                                 f"talks to none{own}")
            return int(args.handler(args) or 0)
    except (BookGenError, ConfigError, ValueError) as exc:
        print(f"bookgen: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bookgen: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `bookgen jobs | head`: the reader left; nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:
        handled = _redis_failure(exc, getattr(args, REDIS_SHOWN, ""))
        if handled is not None:  # Redis went away or refused a command after the reachability check
            print(f"bookgen: error: {handled}", file=sys.stderr)
            return 2
        if environ.get(DEBUG_ENV):
            raise
        # A bug: still one line, marked as unexpected, with the way to see more.
        print(f"bookgen: error: unexpected {type(exc).__name__}: {_one_line(exc)} (set {DEBUG_ENV}=1 for the "
              "traceback)", file=sys.stderr)
        return 1


def _redis_failure(exc: Exception, shown: str) -> str | None:
    import redis
    from bookgen_worker.errors import RedisFull
    from bookgen_worker.redis_client import is_redis_full
    from kombu.exceptions import OperationalError

    where = f" at {shown}" if shown else ""
    if is_redis_full(exc):  # before the connection errors: kombu reports a refused publish as one
        return str(RedisFull("the command's write"))
    if isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OperationalError)):
        return f"lost the connection to Redis{where} during the command: {_one_line(exc)}"
    if isinstance(exc, redis.exceptions.RedisError):
        return f"Redis{where} refused a command: {_one_line(exc)}"
    return None


if __name__ == "__main__":
    sys.exit(main())
