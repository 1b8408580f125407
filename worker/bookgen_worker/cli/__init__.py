"""The `bookgen` command line.

Each sub-command group lives in its own module exposing `register(subparsers)`; a module that is
missing (a part not built yet) is simply not offered. Errors meant for the user (bad input, an
unreachable Redis, a bad spec) are printed as one line with exit status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ..config import ConfigError
from ..errors import BookGenError

#: Modules that contribute sub-commands, in the order `bookgen --help` lists them.
COMMAND_MODULES = (
    "bookgen_worker.cli.jobs",
    "bookgen_worker.cli.dlq",
    "bookgen_worker.cli.status",
    "bookgen_operator.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bookgen", description="BookGen queue system: jobs, queues, local runtime.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except (BookGenError, ConfigError, ValueError) as exc:
        print(f"bookgen: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bookgen: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
