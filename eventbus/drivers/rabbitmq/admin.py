"""The broker operations behind ``eventbus queue``: queue depths, and replaying dead letters.

The CLI (:mod:`eventbus.cli.queue`) only parses arguments and prints; these functions are
the part that talks to RabbitMQ, usable from code too.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

import aio_pika
import aiormq
from aio_pika.abc import AbstractConnection

from .. import _wire
from .topology import DELAY_TIERS_MS, Topology
from .worker import REASON_HEADER

__all__ = ["Replayed", "queue_stats", "replay_dead"]


async def _peek(connection: AbstractConnection, name: str) -> dict[str, Any] | None:
    """Depth and consumers of queue ``name``, or ``None`` when it does not exist."""
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
    try:
        _, head = _wire.decode_head(body)
        head["attempt"] = 1
        return json.dumps(head, separators=(",", ":"), ensure_ascii=False).encode()
    except RecursionError:
        # JSON nested deeper than Python's recursion limit (e.g. 100 000 ``[``).
        raise _wire.PoisonMessage("undecodable body: JSON nested too deeply") from None
    except ValueError as exc:
        raise _wire.PoisonMessage(f"undecodable body: {exc}") from None
