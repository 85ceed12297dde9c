"""The ``rabbitmq`` driver: ``dispatch`` publishes each job to RabbitMQ; workers run them.

The producer side lives here: one long-lived robust connection per process (opened by
``async with bus``), one channel with publisher confirms, persistent ``mandatory`` messages,
and a publish timeout, so ``dispatch`` returns only once the broker holds every job of the
event, and fails clearly instead of hanging when it cannot. The consumer side is
:mod:`.worker` (``eventbus work``); the queues are :mod:`.topology`; the message format is
:mod:`eventbus.drivers._wire`.

aio-pika is asyncio-only, so this driver refuses to run under trio.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from contextvars import Context
from typing import TYPE_CHECKING, Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection
from yarl import URL

from ..._checks import check_count, check_seconds
from ..._errors import BrokerError, FarmNotRunning, RegistrationError
from ..._event import Event
from ..._log import NO_JOB, logger
from .. import _runner, _wire
from ..base import Driver
from .topology import DELAY_TIERS_MS, Topology

if TYPE_CHECKING:
    from ..._listener import Listener

__all__ = [
    "DEFAULT_QUEUE",
    "DEFAULT_URL",
    "QUEUE_ENV",
    "URL_ENV",
    "BrokerError",
    "RabbitMQDriver",
    "require_asyncio",
    "safe_url",
]


# Every eventbus record carries these, so a formatter using %(listener)s never fails; a
# publish carries bytes, its job is named in the message.

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_QUEUE = "eventbus"
#: Environment variables read when the driver is created by name (``QUEUE_DRIVER=rabbitmq``).
URL_ENV = "RABBITMQ_URL"
QUEUE_ENV = "EVENTBUS_QUEUE"


_SIZE_HINT = " (RabbitMQDriver(max_message_size=...))"
_PERSISTENT_MODE = int(aio_pika.DeliveryMode.PERSISTENT)
#: Errors after which a publish is retried once the robust connection is back.
_TRANSIENT = (
    aiormq.exceptions.ChannelInvalidStateError,
    aiormq.exceptions.AMQPConnectionError,
    aiormq.exceptions.ChannelClosed,
    ConnectionError,
    OSError,
)


def require_asyncio(what: str) -> None:
    """Raise when called under trio: aio-pika only runs on asyncio."""
    trio = sys.modules.get("trio")
    if trio is None:
        return
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        return
    raise RuntimeError(
        f"{what}: the rabbitmq driver needs asyncio (aio-pika is asyncio-only), but this code "
        "runs under trio. Use driver='async_farm' or 'sync' under trio, or run the app on "
        "asyncio (anyio.run(main, backend='asyncio'))"
    )


def safe_url(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    try:
        parsed = URL(url)
    except (TypeError, ValueError):
        return "<unparsable url>"
    return str(parsed.with_password("***")) if parsed.password else str(parsed)


class RabbitMQDriver(Driver):
    """Publish jobs to RabbitMQ for ``eventbus work`` processes to run.

    ``url`` defaults to ``$RABBITMQ_URL`` or ``amqp://guest:guest@127.0.0.1:5672/``;
    ``queue`` to ``$EVENTBUS_QUEUE`` or ``"eventbus"``. ``async with bus`` opens the
    connection; ``dispatch`` without it raises (it never connects behind your back, so the
    connection's lifetime is always the app's). ``publish_timeout`` bounds how long one
    ``dispatch`` waits for the broker's confirms, reconnects included.
    """

    name = "rabbitmq"

    def __init__(
        self,
        url: str | None = None,
        *,
        queue: str | None = None,
        max_message_size: int = 1024 * 1024,
        publish_timeout: float = 10.0,
        connect_timeout: float = 10.0,
        reconnect_interval: float = 1.0,
        delivery_limit: int = 20,
    ) -> None:
        require_asyncio("EventBus(driver='rabbitmq')")
        check_count(max_message_size, "RabbitMQDriver: max_message_size (bytes)")
        publish_timeout = check_seconds(publish_timeout, "RabbitMQDriver: publish_timeout")
        connect_timeout = check_seconds(connect_timeout, "RabbitMQDriver: connect_timeout")
        reconnect_interval = check_seconds(reconnect_interval, "RabbitMQDriver: reconnect_interval")
        check_count(delivery_limit, "RabbitMQDriver: delivery_limit")
        self.url = url or os.environ.get(URL_ENV) or DEFAULT_URL
        self.topology = Topology(
            queue or os.environ.get(QUEUE_ENV) or DEFAULT_QUEUE, delivery_limit
        )
        self.max_message_size = max_message_size
        self.publish_timeout = publish_timeout
        self.connect_timeout = connect_timeout
        self.reconnect_interval = reconnect_interval
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._names = _runner.WireNames(self.name)
        self._sendable: set[type] = set()

    @property
    def queue(self) -> str:
        return self.topology.queue

    def describe(self) -> dict[str, Any]:
        return {
            "driver": self.name,
            "url": safe_url(self.url),
            "queue": self.queue,
            "max_message_size": self.max_message_size,
            "publish_timeout": self.publish_timeout,
            "delivery_limit": self.topology.delivery_limit,
        }

    # -- registration: names are the wire's only link to code ------------------------------

    def check_registration(self, listener: Listener, key: type) -> None:
        policy = listener.policy
        longest = max(policy.backoff[: policy.tries - 1], default=0.0)
        if longest * 1000 > DELAY_TIERS_MS[-1]:
            raise RegistrationError(
                f"{listener.name}: backoff {longest!r}s is longer than the rabbitmq driver "
                f"can delay a retry ({DELAY_TIERS_MS[-1] // 1000}s, its longest delay tier, "
                "under RabbitMQ's message TTL limit); use a shorter backoff"
            )
        self._names.check(listener, key, self.bus)

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def connection(self) -> AbstractRobustConnection:
        """The open connection (``async with bus``); workers open their channels on it."""
        if self._connection is None:
            raise self._not_connected("use the connection")
        return self._connection

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        require_asyncio("async with bus (driver='rabbitmq')")
        if self._connection is not None:
            raise RuntimeError(f"the RabbitMQ connection of {self.bus!r} is already open")
        connection = await self._connect()
        try:
            await self.topology.declare(connection)
            self._channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            self._connection = connection
            yield
        finally:
            self._channel = None
            self._connection = None
            await connection.close()

    async def _connect(self) -> AbstractRobustConnection:
        try:
            return await aio_pika.connect_robust(
                self.url,
                timeout=self.connect_timeout,
                reconnect_interval=self.reconnect_interval,
                client_properties={"connection_name": f"eventbus {self.bus.name} {os.getpid()}"},
            )
        except (TimeoutError, aiormq.exceptions.AMQPError, OSError) as exc:
            raise BrokerError(
                f"cannot connect to RabbitMQ at {safe_url(self.url)} for {self.bus!r}: "
                f"{type(exc).__name__}: {exc}. Is the broker running? Set RABBITMQ_URL "
                "(or RabbitMQDriver(url=...)) to where it is"
            ) from exc

    def _not_connected(self, doing: str) -> FarmNotRunning:
        return FarmNotRunning(
            f"{self.bus!r} cannot {doing}: its RabbitMQ connection is not open. Open it with "
            "`async with bus:` or `FastAPI(lifespan=bus.lifespan)` (the driver does not "
            "connect lazily), or set QUEUE_DRIVER=sync / async_farm to run listeners here"
        )

    # -- publishing -------------------------------------------------------------------------

    async def submit(self, event: Event, listeners: tuple[Listener, ...], context: Context) -> None:
        if self._channel is None:
            raise self._not_connected(f"queue {event.event_name!r}")
        cls = type(event)
        if cls not in self._sendable:
            self._names.claim_event(cls, self.bus, "dispatching")
            self._sendable.add(cls)
        jobs = _runner.build(event, listeners, context, self.max_message_size, _SIZE_HINT)
        queue = self.topology.queue
        what = f"{event.event_name!r}"
        if len(jobs) == 1:
            await self._bounded(self._publish(jobs[0][1], queue, jobs[0][0], None, what), what, 1)
        else:
            await self._bounded(
                asyncio.gather(
                    *(self._publish(body, queue, job, None, what) for job, body in jobs)
                ),
                what,
                len(jobs),
            )

    async def publish(
        self,
        body: bytes,
        routing_key: str,
        *,
        message_id: str,
        headers: dict[str, Any] | None = None,
        what: str = "a job",
    ) -> None:
        """Publish one persistent message and wait for its confirm (the worker's copies)."""
        await self._bounded(self._publish(body, routing_key, message_id, headers, what), what, 1)

    async def _bounded(self, publishing: Awaitable[object], what: str, count: int) -> None:
        """Await ``publishing`` (reconnects included) within ``publish_timeout``, else raise.

        ``asyncio.timeout`` semantics with one timer handle and no context manager objects
        (~30 k instructions per dispatch less): the deadline cancels the task, and that
        cancellation, if it is ours alone, becomes :class:`BrokerError`.
        """
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - aio-pika needs a task anyway
            raise RuntimeError("RabbitMQDriver: publishing needs to run in an asyncio task")
        loop = task.get_loop()
        cancelling = task.cancelling()
        fired: list[bool] = []
        deadline = loop.call_at(loop.time() + self.publish_timeout, _expire, task, fired)
        try:
            await publishing
        except asyncio.CancelledError:
            if fired:
                fired.clear()
                if task.uncancel() <= cancelling:
                    raise self._timeout(what, count) from None
            raise
        finally:
            deadline.cancel()
            if fired:  # fired, but the cancellation was swallowed below: undo our request
                task.uncancel()

    def _timeout(self, what: str, count: int) -> BrokerError:
        return BrokerError(
            f"RabbitMQ at {safe_url(self.url)} did not confirm {count} job(s) of {what} within "
            f"publish_timeout={self.publish_timeout}s (broker unreachable, blocked or "
            "overloaded); the event may or may not be queued"
        )

    async def _publish(
        self,
        body: bytes,
        routing_key: str,
        message_id: str,
        headers: dict[str, Any] | None,
        what: str,
    ) -> None:
        # Straight to aiormq with prebuilt properties: aio_pika.Message plus its .properties
        # cost ~100 k instructions per publish for fields we never set. The channel still
        # has confirms and on_return_raises, so returns and nacks raise as before; the
        # robust channel's get_underlay_channel waits for a reopened channel.
        properties = aiormq.spec.Basic.Properties(
            delivery_mode=_PERSISTENT_MODE,
            content_type=_wire.CONTENT_TYPE,
            message_id=message_id,
            headers=headers,
        )
        while True:
            channel = self._channel
            if channel is None:
                raise self._not_connected(f"queue {what}")
            try:
                if channel.is_closed:
                    raise aiormq.exceptions.ChannelInvalidStateError(f"{channel!r} closed")
                raw = await channel.get_underlay_channel()
                await raw.basic_publish(
                    body,
                    exchange="",
                    routing_key=routing_key,
                    properties=properties,
                    mandatory=True,
                )
                return
            except aiormq.exceptions.PublishError as exc:
                self.topology.forget_delay(routing_key)  # deleted by hand? declare it again
                raise BrokerError(
                    f"RabbitMQ could not route {what} to queue {routing_key!r} (does it exist? "
                    f"it is declared by `async with bus`): {exc}"
                ) from exc
            except aiormq.exceptions.DeliveryError as exc:
                raise BrokerError(f"RabbitMQ refused {what} (nack): {exc}") from exc
            except _TRANSIENT as exc:
                # The robust connection is reconnecting: wait for it, then publish again
                # (at-least-once: a publish whose confirm was lost may be queued twice).
                logger.debug("publish of %s interrupted (%r); retrying", what, exc, extra=NO_JOB)
                await asyncio.sleep(0.05)
                await channel.ready()


def _expire(task: asyncio.Task[Any], fired: list[bool]) -> None:
    fired.append(True)
    task.cancel()
