"""The ``eventbus`` command line: ``eventbus --help``.

Each command lives in its own module exposing ``register(subparsers)``, which adds its
parser and sets ``handler`` (a function of the parsed namespace returning an exit code).
Exit codes: 0 ok, 1 failure, 2 usage error.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

__all__ = ["main"]

#: Modules of ``eventbus.cli`` that add a command; add yours here.
COMMANDS: tuple[str, ...] = ("make", "listing", "demo", "work", "queue")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eventbus",
        description="Scaffold, inspect, demo and run eventbus events and listeners.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"eventbus.cli.{name}").register(subparsers)
    return parser


def importable_cwd() -> None:
    """Make the current directory importable, as ``python -m`` would.

    The console script's ``sys.path[0]`` is its own bin folder, so without this ``eventbus
    list`` run from the project root could not import ``app.event_provider``.
    """
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


def main(argv: Sequence[str] | None = None) -> int:
    importable_cwd()
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    return int(handler(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
