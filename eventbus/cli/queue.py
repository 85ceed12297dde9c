"""``eventbus queue stats`` and ``eventbus queue replay-dead``: look at and mend the queue."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import TYPE_CHECKING, Any, NamedTuple

from ._common import add_broker_options

if TYPE_CHECKING:
    from aio_pika.abc import AbstractConnection

__all__ = ["Replayed", "queue_stats", "register", "replay_dead"]


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


async def _peek(connection: AbstractConnection, name: str) -> dict[str, Any] | None:
    """Depth and consumers of queue ``name``, or ``None`` when it does not exist."""
    import aiormq

    channel = await connection.channel()
    try:
        declared = await channel.declare_queue(name, passive=True)
    except aiormq.exceptions.ChannelNotFoundEntity:
        return None  # the broker closed this channel
    result = declared.declaration_result
    await channel.close()
    return {"name": name, "messages": result.message_count, "consumers": result.consumer_count}


async def queue_stats(url: str, queue: str) -> dict[str, Any]:
    """The work, dead-letter and poison queues (``None`` when missing), and the delay queues.

    AMQP cannot list queues, but eventbus only ever declares the fixed delay tiers, so each
    is looked up by name; ``delays`` lists those that exist, shortest first.
    """
    import aio_pika

    from eventbus.drivers.rabbitmq import DELAY_TIERS_MS, Topology

    topology = Topology(queue)
    out: dict[str, Any] = {"queue": queue}
    connection = await aio_pika.connect(url, timeout=10)
    async with connection:
        for key, name in (
            ("work", topology.queue),
            ("dead", topology.dead),
            ("poison", topology.poison),
        ):
            out[key] = await _peek(connection, name)
        delays = []
        for ms in DELAY_TIERS_MS:
            found = await _peek(connection, topology.delay_name(ms))
            if found is not None:
                found["delay_ms"] = ms
                delays.append(found)
        out["delays"] = delays
    return out


class Replayed(NamedTuple):
    """What one ``replay-dead`` run did."""

    replayed: int  #: jobs moved back to the work queue
    poison: int  #: messages moved to ``<queue>.poison``: not eventbus envelopes


async def replay_dead(url: str, queue: str, limit: int | None = None) -> Replayed:
    """Move up to ``limit`` dead-lettered jobs back to ``queue``; poison goes to ``.poison``.

    Only the messages in the dead-letter queue when the run starts are handled, so jobs that
    fail again at once (and come back while it runs) never make it loop.
    """
    import aio_pika

    from eventbus.drivers import _wire
    from eventbus.drivers.rabbitmq import Topology
    from eventbus.worker import REASON_HEADER

    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 or None, got {limit!r}")
    topology = Topology(queue)
    replayed = poison = 0
    connection = await aio_pika.connect(url, timeout=10)
    async with connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        dead = await channel.declare_queue(topology.dead, passive=True)
        present = dead.declaration_result.message_count or 0
        poison_declared = False
        for _ in range(present):
            if limit is not None and replayed >= limit:
                break
            message = await dead.get(no_ack=False, fail=False)
            if message is None:
                break
            headers = dict(message.headers or {})
            try:
                body = _first_attempt(message.body)
            except _wire.PoisonMessage as exc:
                body = message.body  # kept as it is, for whoever looks into it
                if not poison_declared:
                    await topology.declare_poison(connection)
                    poison_declared = True
                headers[REASON_HEADER] = f"replay-dead: {exc.reason}"[:1000]
                target = topology.poison
                poison += 1
            else:
                replays = headers.get("x-eventbus-replays", 0)
                replays = replays if isinstance(replays, int) else 0
                headers = {"x-eventbus-replays": replays + 1}
                target = topology.queue
                replayed += 1
            await channel.default_exchange.publish(
                aio_pika.Message(
                    body,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    content_type=message.content_type,
                    message_id=message.message_id,
                    headers=headers,
                ),
                target,
                mandatory=True,
            )
            await message.ack()
    return Replayed(replayed, poison)


def _first_attempt(body: bytes) -> bytes:
    """The envelope with ``attempt`` reset to 1, so the job gets its full ``tries`` again.

    Raises :class:`~eventbus.drivers._wire.PoisonMessage` for a body no worker could run.
    """
    from eventbus.drivers import _wire

    try:
        _, head = _wire.decode_head(body)
        head["attempt"] = 1
        return json.dumps(head, separators=(",", ":"), ensure_ascii=False).encode()
    except RecursionError:
        # JSON nested deeper than Python's recursion limit (e.g. 100 000 ``[``).
        raise _wire.PoisonMessage("undecodable body: JSON nested too deeply") from None
    except ValueError as exc:
        raise _wire.PoisonMessage(f"undecodable body: {exc}") from None


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
