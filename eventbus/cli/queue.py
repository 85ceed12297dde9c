"""``eventbus queue stats`` and ``eventbus queue replay-dead``: look at and mend the queue."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from ._common import add_broker_options

__all__ = ["queue_stats", "register", "replay_dead"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "queue",
        help="RabbitMQ queue depth, consumers and dead letters",
        description="Inspect the bus's RabbitMQ queues, or replay its dead-lettered jobs.",
    )
    actions = parser.add_subparsers(dest="queue_command", metavar="ACTION", required=True)
    stats = actions.add_parser("stats", help="depth, consumers and dead-lettered count")
    replay = actions.add_parser(
        "replay-dead",
        help="move dead-lettered jobs back to the queue for another try",
        description=(
            "Move jobs from the dead-letter queue back to the work queue, attempt reset to 1. "
            "Each is acked from the dead-letter queue only after the broker confirmed its copy."
        ),
    )
    replay.add_argument("--limit", type=int, metavar="N", help="replay at most N jobs")
    for sub in (stats, replay):
        add_broker_options(sub)
    stats.add_argument("--json", action="store_true", help="print JSON")
    stats.set_defaults(handler=_stats)
    replay.set_defaults(handler=_replay)


def _names(args: argparse.Namespace) -> tuple[str, str]:
    import os

    from eventbus.drivers.rabbitmq import DEFAULT_URL, URL_ENV, RabbitMQDriver

    url = args.url or os.environ.get(URL_ENV) or DEFAULT_URL
    # Creating the driver only to share its defaults and validation; it does not connect.
    return url, RabbitMQDriver(url, queue=args.queue).queue


async def queue_stats(url: str, queue: str) -> dict[str, Any]:
    """Depth and consumers of the work queue, and the dead-letter queue's depth."""
    import aio_pika
    import aiormq

    from eventbus.drivers.rabbitmq import Topology

    topology = Topology(queue)
    out: dict[str, Any] = {"queue": queue}
    connection = await aio_pika.connect(url, timeout=10)
    async with connection:
        for key, name in (("work", topology.queue), ("dead", topology.dead)):
            channel = await connection.channel()
            try:
                declared = await channel.declare_queue(name, passive=True)
            except aiormq.exceptions.ChannelNotFoundEntity:
                out[key] = None
                continue
            result = declared.declaration_result
            out[key] = {
                "name": name,
                "messages": result.message_count,
                "consumers": result.consumer_count,
            }
            await channel.close()
    return out


async def replay_dead(url: str, queue: str, limit: int | None = None) -> int:
    """Move up to ``limit`` dead-lettered jobs back to ``queue``; return how many moved."""
    import aio_pika

    from eventbus.drivers.rabbitmq import Topology

    topology = Topology(queue)
    moved = 0
    connection = await aio_pika.connect(url, timeout=10)
    async with connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        dead = await channel.declare_queue(topology.dead, passive=True)
        while limit is None or moved < limit:
            message = await dead.get(no_ack=False, fail=False)
            if message is None:
                break
            headers = dict(message.headers or {})
            replays = headers.get("x-eventbus-replays", 0)
            replays = replays if isinstance(replays, int) else 0
            await channel.default_exchange.publish(
                aio_pika.Message(
                    _first_attempt(message.body),
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    content_type=message.content_type,
                    message_id=message.message_id,
                    headers={"x-eventbus-replays": replays + 1},
                ),
                topology.queue,
                mandatory=True,
            )
            await message.ack()
            moved += 1
    return moved


def _first_attempt(body: bytes) -> bytes:
    """The envelope with ``attempt`` reset to 1, so the job gets its full ``tries`` again."""
    try:
        envelope = json.loads(body)
    except ValueError:
        return body  # poison stays poison: it will come back with its reason
    if not isinstance(envelope, dict) or "attempt" not in envelope:
        return body
    envelope["attempt"] = 1
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode()


def _stats(args: argparse.Namespace) -> int:
    url, queue = _names(args)
    try:
        stats = asyncio.run(queue_stats(url, queue))
    except (OSError, ConnectionError) as exc:
        print(f"eventbus queue stats: cannot reach RabbitMQ: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(stats))
        return 0
    work, dead = stats["work"], stats["dead"]
    if work is None:
        print(f"queue {queue!r} does not exist yet (it is declared by `async with bus`)")
        return 1
    print(f"queue {queue}: {work['messages']} ready, {work['consumers']} consumer(s)")
    dead_count = dead["messages"] if dead is not None else 0
    print(f"dead-lettered ({queue}.dead): {dead_count}")
    return 0


def _replay(args: argparse.Namespace) -> int:
    url, queue = _names(args)
    try:
        moved = asyncio.run(replay_dead(url, queue, args.limit))
    except (OSError, ConnectionError) as exc:
        print(f"eventbus queue replay-dead: cannot reach RabbitMQ: {exc}", file=sys.stderr)
        return 1
    print(f"replayed {moved} dead-lettered job(s) into {queue!r}")
    return 0
