"""`python -m bookgen_worker.flower`: Flower on the BookGen broker, with authentication on by default.

Credentials come from FLOWER_BASIC_AUTH="user:pass" or FLOWER_USER/FLOWER_PASSWORD (a Kubernetes
Secret); without them Flower refuses to start unless --no-auth is given. They reach Flower through
its own FLOWER_BASIC_AUTH environment variable, never the command line (visible in `ps`).
Flower keeps every task it has seen in memory, so max_tasks is bounded (default 10 000); and every
worker name it has seen, so with --purge-offline-workers N it runs under bookgen_worker.flower_purge,
which forgets a worker N seconds after it went offline, in every view (autoscaled pools keep naming
new workers).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Mapping, Sequence

from .config import ConfigError

DEFAULT_MAX_TASKS = 10_000
MAX_PURGE_SECONDS = 7 * 86400
#: Path segments without the slashes around them (Flower adds its own).
URL_PREFIX = re.compile(r"[A-Za-z0-9._~-]+(/[A-Za-z0-9._~-]+)*")
MAX_MAX_TASKS = 1_000_000
#: Our own variables: Flower would choke on them (it maps every FLOWER_* variable to an option).
OWN_VARIABLES = ("FLOWER_USER", "FLOWER_PASSWORD")


def basic_auth(env: Mapping[str, str]) -> str | None:
    """"user:pass" from the environment, None when no credentials are set; ConfigError if malformed."""
    combined = env.get("FLOWER_BASIC_AUTH", "").strip()
    user, password = env.get("FLOWER_USER", "").strip(), env.get("FLOWER_PASSWORD", "")
    if not combined and (user or password):
        if not (user and password):
            raise ConfigError("set both FLOWER_USER and FLOWER_PASSWORD (or FLOWER_BASIC_AUTH=user:password)")
        combined = f"{user}:{password}"
    if not combined:
        return None
    name, _, secret = combined.partition(":")
    if not name or not secret:
        raise ConfigError("FLOWER_BASIC_AUTH must look like user:password, both non-empty")
    if "," in combined:
        raise ConfigError("Flower credentials must not contain ',' (Flower splits several users on it)")
    return combined


def flower_command(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
    """The command and environment that run Flower as asked (pure, for tests)."""
    if not 1 <= args.max_tasks <= MAX_MAX_TASKS:
        raise ConfigError(f"--max-tasks must be from 1 to {MAX_MAX_TASKS} (got {args.max_tasks})")
    auth = basic_auth(env)
    child_env = {k: v for k, v in env.items() if k not in OWN_VARIABLES and k != "FLOWER_BASIC_AUTH"}
    if auth:
        child_env["FLOWER_BASIC_AUTH"] = auth
    elif not args.no_auth:
        raise ConfigError(
            "Flower needs credentials: set FLOWER_BASIC_AUTH=user:password or FLOWER_USER and FLOWER_PASSWORD "
            "(or pass --no-auth to run it open, e.g. on a laptop)"
        )
    if args.purge_offline_workers is not None and not 1 <= args.purge_offline_workers <= MAX_PURGE_SECONDS:
        raise ConfigError(f"--purge-offline-workers must be from 1 to {MAX_PURGE_SECONDS} seconds "
                          f"(got {args.purge_offline_workers})")
    if args.url_prefix and not URL_PREFIX.fullmatch(args.url_prefix):
        raise ConfigError(f"--url-prefix must be a path such as flower or bookgen/flower (got {args.url_prefix!r})")
    runner = ["celery"] if args.purge_offline_workers is None else ["bookgen_worker.flower_purge"]
    command = [
        sys.executable, "-m", *runner, "-A", "bookgen_worker.app", "flower",
        f"--port={args.port}", f"--address={args.address}", f"--max_tasks={args.max_tasks}",
        "--persistent=False",
    ]
    if args.purge_offline_workers is not None:
        command.append(f"--purge_offline_workers={args.purge_offline_workers}")
    if args.url_prefix:
        command.append(f"--url_prefix={args.url_prefix}")
    return command, child_env


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bookgen_worker.flower", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=5555)
    parser.add_argument("--address", default="0.0.0.0")
    parser.add_argument("--max-tasks", type=int, default=DEFAULT_MAX_TASKS, help="tasks kept in memory")
    parser.add_argument("--url-prefix", default="", help="when served under a path, e.g. bookgen/flower")
    parser.add_argument("--purge-offline-workers", type=int, default=None, metavar="SECONDS",
                        help="forget a worker this long after it went offline (default: never)")
    parser.add_argument("--no-auth", action="store_true", help="run without authentication (not for clusters)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        command, env = flower_command(args, os.environ)
    except ConfigError as exc:
        print(f"bookgen flower: error: {exc}", file=sys.stderr)
        return 2
    if args.no_auth and "FLOWER_BASIC_AUTH" not in env:
        print("bookgen flower: warning: running WITHOUT authentication", file=sys.stderr)
    sys.stdout.flush()
    os.execvpe(command[0], command, env)  # PID 1 stays Flower itself: signals reach it directly
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
