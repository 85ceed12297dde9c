"""The RabbitMQ queues of one bus queue: their names, arguments and the delay-tier ladder.

Queues, for a queue name ``Q`` (default ``eventbus``):

- ``Q``: a quorum queue with a delivery limit, dead-lettering into ``Q.dead``;
- ``Q.dead``: the dead-letter queue (jobs that failed their last attempt, poison messages);
- ``Q.poison``: where ``eventbus queue replay-dead`` moves dead letters no worker can decode;
- ``Q.delay.<ms>ms``: one delay queue per delay tier (:data:`DELAY_TIERS_MS`, at most 87),
  whose queue-level TTL dead-letters back into ``Q``, so different delays never block each
  other; a retry waits in the smallest tier at least as long as its backoff. Each expires
  (``x-expires``) once idle for longer than its TTL plus :data:`DELAY_EXPIRES_MARGIN_MS`.
"""

from __future__ import annotations

import bisect
import math
import time
from typing import Any

import aiormq
from aio_pika.abc import AbstractConnection, AbstractRobustConnection

from ..._errors import BrokerError

__all__ = [
    "DELAY_EXPIRES_MARGIN_MS",
    "DELAY_TIERS_MS",
    "BrokerError",
    "Topology",
]


def _delay_tiers() -> tuple[int, ...]:
    # The R10 preferred numbers (each at most 1.3x the one below), in whole ms from 10 ms up
    # to 4e9 ms (46 days: RabbitMQ's TTL limit is 2**32 - 1 ms).
    mantissas = (100, 125, 160, 200, 250, 315, 400, 500, 630, 800)
    tiers = (math.ceil(m * 10**exp / 100) for exp in range(1, 10) for m in mantissas)
    return tuple(ms for ms in tiers if ms <= 4_000_000_000)


#: The TTLs (ms) of the only delay queues eventbus declares: a retry waits in the smallest
#: tier at least as long as its backoff, so it never starts early and at most 30% late
#: (10 ms for a backoff under 10 ms), and distinct backoffs never mean distinct queues.
DELAY_TIERS_MS: tuple[int, ...] = _delay_tiers()
#: A delay queue's ``x-expires`` is its TTL plus this. Publishing does not renew a queue's
#: lease, declaring does, so a tier is redeclared before a publish once its last declare is
#: older than ``_DELAY_RENEW_S``: its last message always leaves long before it expires.
DELAY_EXPIRES_MARGIN_MS = 15 * 60 * 1000
_DELAY_RENEW_S = 30.0


class Topology:
    """The queue names and arguments of one bus queue; declaring them is idempotent."""

    def __init__(self, queue: str, delivery_limit: int = 20) -> None:
        if not queue or not isinstance(queue, str) or len(queue) > 200:
            raise ValueError(f"queue must be a non-empty str of at most 200 chars, got {queue!r}")
        self.queue = queue
        self.dead = f"{queue}.dead"
        #: Where ``eventbus queue replay-dead`` moves dead letters that no worker can decode.
        self.poison = f"{queue}.poison"
        self.delivery_limit = delivery_limit
        self._delays: dict[str, float] = {}  # delay queue -> monotonic time of its last declare

    def work_arguments(self) -> dict[str, Any]:
        return {
            "x-queue-type": "quorum",
            "x-delivery-limit": self.delivery_limit,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": self.dead,
        }

    def delay_queue(self, delay: float) -> tuple[str, int]:
        """The name and TTL (ms) of the delay tier for a backoff of ``delay`` seconds."""
        # Rounded to the microsecond first, so 0.16 s (160.00000000000003 ms) is the 160 tier.
        index = bisect.bisect_left(DELAY_TIERS_MS, round(delay * 1000, 3))
        if not delay >= 0 or index == len(DELAY_TIERS_MS):
            raise ValueError(
                f"a backoff of {delay!r} seconds has no delay tier: the rabbitmq driver delays "
                f"retries by 0 to {DELAY_TIERS_MS[-1] // 1000} seconds"
            )
        ms = DELAY_TIERS_MS[index]
        return self.delay_name(ms), ms

    def delay_name(self, ms: int) -> str:
        return f"{self.queue}.delay.{ms}ms"

    def delay_arguments(self, ms: int) -> dict[str, Any]:
        return {
            "x-message-ttl": ms,
            "x-expires": ms + DELAY_EXPIRES_MARGIN_MS,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": self.queue,
        }

    async def declare(self, connection: AbstractRobustConnection) -> None:
        """Declare the work and dead-letter queues (a no-op when they exist alike)."""
        await self._declare(connection, self.dead, {"x-queue-type": "quorum"})
        await self._declare(connection, self.queue, self.work_arguments())

    async def declare_poison(self, connection: AbstractConnection) -> None:
        await self._declare(connection, self.poison, {"x-queue-type": "quorum"})

    async def declare_delay(self, connection: AbstractRobustConnection, delay: float) -> str:
        """The delay tier for ``delay`` seconds, declared (its lease renewed) when due."""
        name, ms = self.delay_queue(delay)
        now = time.monotonic()
        if now - self._delays.get(name, -math.inf) > _DELAY_RENEW_S:
            await self._declare(connection, name, self.delay_arguments(ms))
            self._delays[name] = now
        return name

    def forget_delay(self, name: str) -> None:
        """Declare ``name`` again before its next use (a publish found it missing)."""
        self._delays.pop(name, None)

    async def _declare(
        self, connection: AbstractConnection, name: str, arguments: dict[str, Any]
    ) -> None:
        # A throwaway channel: a mismatch closes it, and the error can say what to do.
        channel = await connection.channel(publisher_confirms=False)
        try:
            await channel.declare_queue(name, durable=True, arguments=arguments)
        except aiormq.exceptions.ChannelPreconditionFailed as exc:
            raise BrokerError(
                f"RabbitMQ queue {name!r} exists with other settings than eventbus declares "
                f"({exc}); delete it (`rabbitmqctl delete_queue {name}`) or choose another "
                "queue name"
            ) from exc
        finally:
            if not channel.is_closed:
                await channel.close()
