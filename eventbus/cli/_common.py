"""Options more than one command takes, spelled and documented once."""

from __future__ import annotations

import argparse

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
    """``--queue NAME`` and ``--url``: which RabbitMQ queue, on which broker."""
    parser.add_argument(
        "--queue", metavar="NAME", help="queue name (default: $EVENTBUS_QUEUE or eventbus)"
    )
    parser.add_argument("--url", help="broker URL (default: $RABBITMQ_URL or local guest)")
