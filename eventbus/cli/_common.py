"""Options more than one command takes, spelled and documented once."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

__all__ = ["add_broker_options", "add_provider_option"]


def add_provider_option(parser: argparse.ArgumentParser, *, note: str = "") -> None:
    """``--provider MODULE``; ``note`` is appended to the default in the help text."""
    parser.add_argument(
        "--provider",
        metavar="MODULE",
        help="provider module with an `events` dict (default: $EVENTBUS_PROVIDER or "
        f"app.event_provider{note})",
    )


def add_broker_options(parser: argparse.ArgumentParser) -> None:
    """``--queue NAME`` and the broker URL (``--url`` or ``--url-file``) into ``args.url``.

    Both URL options store into ``args.url`` while parsing, so every command reads the URL
    the same way (``args.url``, else ``$RABBITMQ_URL``, else the local guest broker).
    """
    parser.add_argument(
        "--queue", metavar="NAME", help="queue name (default: $EVENTBUS_QUEUE or eventbus)"
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--url",
        action=_UrlAction,
        help="broker URL (default: $RABBITMQ_URL or amqp://guest:guest@127.0.0.1:5672/). A "
        "password given here is visible to every user of this machine in the process list "
        "(/proc/<pid>/cmdline): set $RABBITMQ_URL or use --url-file instead",
    )
    where.add_argument(
        "--url-file",
        dest="url",
        metavar="PATH",
        action=_UrlFileAction,
        help="read the broker URL from the first line of PATH (e.g. a mounted secret), so "
        "the password is neither on the command line nor in the environment",
    )


class _UrlAction(argparse.Action):
    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        url = str(values)
        if _has_password(url):
            print(
                f"{parser.prog}: warning: --url carries a password, which other users can "
                "read in the process list; set $RABBITMQ_URL or use --url-file PATH instead",
                file=sys.stderr,
            )
        setattr(namespace, self.dest, url)


class _UrlFileAction(argparse.Action):
    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        path = str(values)
        try:
            with open(path, encoding="utf-8") as file:
                url = file.readline().strip()
        except (OSError, UnicodeDecodeError) as exc:
            parser.error(f"--url-file {path}: cannot read it ({exc})")
        if not url:
            parser.error(f"--url-file {path}: its first line is empty; write the broker URL there")
        setattr(namespace, self.dest, url)


def _has_password(url: str) -> bool:
    try:
        return bool(urlsplit(url).password)
    except ValueError:
        return False
