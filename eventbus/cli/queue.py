"""``eventbus queue stats`` and ``eventbus queue replay-dead``: look at and mend the queue.

Only arguments and printing live here; the broker work is
:mod:`eventbus.drivers.rabbitmq.admin`, imported when a command runs (``eventbus --help``
needs no aio-pika).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from ._common import add_broker_options

__all__ = ["register"]

#: Names this module held in 0.1, now in :mod:`eventbus.drivers.rabbitmq.admin`.
_MOVED = frozenset({"Replayed", "queue_stats", "replay_dead"})


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        from eventbus.drivers.rabbitmq import admin

        return getattr(admin, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "queue",
        help="RabbitMQ queue depth, consumers and dead letters",
        description="Inspect the bus's RabbitMQ queues, or replay its dead-lettered jobs.",
    )
    actions = parser.add_subparsers(dest="queue_command", metavar="ACTION", required=True)
    stats = actions.add_parser(
        "stats",
        help="depth, consumers, dead-lettered, poison and delayed counts",
        description=(
            "Depth and consumers of the work queue; depth of the dead-letter queue, of the "
            "poison queue and of each delay queue that exists (retries waiting their backoff)."
        ),
    )
    replay = actions.add_parser(
        "replay-dead",
        help="move dead-lettered jobs back to the queue for another try",
        description=(
            "Move jobs from the dead-letter queue back to the work queue, attempt reset to 1. "
            "Each is acked from the dead-letter queue only after the broker confirmed its copy. "
            "A message that is not an eventbus envelope (no worker could run it) is moved to "
            "<queue>.poison instead, with the reason in its x-eventbus-reason header. One run "
            "handles at most the messages that were dead-lettered when it started."
        ),
    )
    replay.add_argument(
        "--limit", type=_positive_int, metavar="N", help="replay at most N jobs (N >= 1)"
    )
    for sub in (stats, replay):
        add_broker_options(sub)
    stats.add_argument("--json", action="store_true", help="print JSON")
    stats.set_defaults(handler=_stats)
    replay.set_defaults(handler=_replay)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _names(args: argparse.Namespace) -> tuple[str, str]:
    import os

    from eventbus.drivers.rabbitmq import DEFAULT_URL, URL_ENV, RabbitMQDriver

    url = args.url or os.environ.get(URL_ENV) or DEFAULT_URL
    # Creating the driver only to share its defaults and validation; it does not connect.
    return url, RabbitMQDriver(url, queue=args.queue).queue


def _stats(args: argparse.Namespace) -> int:
    from eventbus.drivers.rabbitmq.admin import queue_stats

    url, queue = _names(args)
    try:
        stats = asyncio.run(queue_stats(url, queue))
    except (OSError, ConnectionError) as exc:
        print(f"eventbus queue stats: cannot reach RabbitMQ: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(stats))
        return 0
    work, dead, poison = stats["work"], stats["dead"], stats["poison"]
    if work is None:
        print(f"queue {queue!r} does not exist yet (it is declared by `async with bus`)")
        return 1
    print(f"queue {queue}: {work['messages']} ready, {work['consumers']} consumer(s)")
    print(f"dead-lettered ({queue}.dead): {dead['messages'] if dead is not None else 0}")
    print(f"poison ({queue}.poison): {poison['messages'] if poison is not None else 0}")
    delays = stats["delays"]
    waiting = sum(d["messages"] for d in delays)
    each = ", ".join(f"{d['name']}: {d['messages']}" for d in delays)
    print(f"waiting to retry: {waiting}" + (f" ({each})" if each else ""))
    return 0


def _replay(args: argparse.Namespace) -> int:
    import aiormq

    from eventbus.drivers.rabbitmq.admin import replay_dead

    url, queue = _names(args)
    try:
        done = asyncio.run(replay_dead(url, queue, args.limit))
    except (OSError, ConnectionError) as exc:
        print(f"eventbus queue replay-dead: cannot reach RabbitMQ: {exc}", file=sys.stderr)
        return 1
    except aiormq.exceptions.ChannelNotFoundEntity:
        print(
            f"eventbus queue replay-dead: queue {queue + '.dead'!r} does not exist (it is "
            "declared by `async with bus`); check --queue",
            file=sys.stderr,
        )
        return 1
    line = f"replayed {done.replayed} dead-lettered job(s) into {queue!r}"
    if done.poison:
        line += (
            f"; moved {done.poison} poison message(s) (not eventbus envelopes) to "
            f"{queue + '.poison'!r}, see their x-eventbus-reason header"
        )
    print(line)
    return 0
