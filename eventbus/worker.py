"""The consumer behind ``eventbus work``: run queued RabbitMQ jobs, at least once.

A :class:`Worker` consumes the bus's queue with ``prefetch = concurrency`` and runs each job
through the same machinery as the in-process farm (:func:`eventbus._listener.run_attempt`:
the listener's timeout, in a fresh context holding the dispatcher's ``eventbus.context``).
A message is acked only after its job finished, or after the copy that replaces it (the
retry in a delay queue, or the dead-letter) was confirmed by the broker — so a crash at any
point leaves the job in RabbitMQ, to be redelivered.

Event classes and listeners are found only by name, in the bus's own registrations. A
message naming anything else, or that does not decode, goes straight to the dead-letter
queue with the reason in its headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from contextvars import Context, ContextVar, copy_context
from typing import TYPE_CHECKING, Any

import aiormq
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustChannel

from . import context as _context
from ._event import Event
from ._listener import _drive, qualified_name, run_attempt
from ._log import NO_JOB, job_record, logger, record
from .drivers import _wire
from .drivers.rabbitmq import BrokerError, RabbitMQDriver

if TYPE_CHECKING:
    from ._bus import EventBus
    from ._listener import Listener

__all__ = ["Job", "Worker", "WorkerReport", "current_job"]


#: Headers a dead-lettered message carries (besides ``x-death`` from the broker).
REASON_HEADER = "x-eventbus-reason"
ERROR_TYPE_HEADER = "x-eventbus-error-type"
ERROR_HEADER = "x-eventbus-error"
ATTEMPTS_HEADER = "x-eventbus-attempts"


class Job:
    """The job a listener is running in a worker: ids for idempotency, attempt, timing."""

    __slots__ = ("attempt", "dispatched_at", "event_id", "id", "listener", "redelivered")

    def __init__(self, envelope: _wire.Envelope, redelivered: bool) -> None:
        self.id = envelope.job_id
        self.event_id = envelope.event_id
        self.listener = envelope.listener
        self.attempt = envelope.attempt
        self.dispatched_at = envelope.dispatched_at
        #: The broker delivered this message before (a worker died or disconnected).
        self.redelivered = redelivered

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.listener} attempt {self.attempt}>"


_current_job: ContextVar[Job | None] = ContextVar("eventbus.worker.job", default=None)


def current_job() -> Job | None:
    """The job being run, inside a listener run by ``eventbus work`` (else ``None``).

    Delivery is at least once: use ``current_job().id`` to make a side effect idempotent.
    """
    return _current_job.get()


class WorkerReport:
    """What a worker did, for logs and tests."""

    __slots__ = ("dead_lettered", "failed", "requeued", "retried", "stale", "succeeded")

    def __init__(self) -> None:
        self.succeeded = 0
        self.failed = 0
        self.retried = 0
        self.dead_lettered = 0
        self.requeued = 0  # in flight or prefetched at shutdown, left to the broker
        self.stale = 0  # delivered on a channel lost since: the broker requeued them

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)}" for name in self.__slots__)
        return f"WorkerReport({inner})"


class Worker:
    """Consume ``bus``'s RabbitMQ queue and run its jobs, ``concurrency`` at a time.

    ``await worker.run(stop)`` connects (``async with bus``), consumes until ``stop`` is set,
    then stops consuming, lets running jobs finish for up to ``grace`` seconds, cancels the
    rest and closes the channel so the broker requeues every unacked job.
    """

    def __init__(
        self,
        bus: EventBus,
        *,
        concurrency: int = 10,
        grace: float = 30.0,
        verbose: bool = False,
        stats_interval: float = 10.0,
    ) -> None:
        if not isinstance(bus.driver, RabbitMQDriver):
            raise TypeError(
                f"{bus!r} uses the {bus.driver.name!r} driver; a worker consumes RabbitMQ, "
                "create the bus with driver='rabbitmq' (or QUEUE_DRIVER=rabbitmq)"
            )
        # Finite and in range, before anything else (NaN slips past `grace < 0`).
        from ._checks import check_count, check_seconds

        check_count(concurrency, "Worker: concurrency")
        check_seconds(grace, "Worker: grace", zero_ok=True)
        check_seconds(stats_interval, "Worker: stats_interval")
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be an int >= 1, got {concurrency!r}")
        if grace < 0:
            raise ValueError(f"grace must be >= 0 seconds, got {grace!r}")
        self.bus = bus
        self.driver: RabbitMQDriver = bus.driver
        self.concurrency = concurrency
        self.grace = grace
        self.verbose = verbose
        self.stats_interval = stats_interval
        self.report = WorkerReport()
        self.consuming = asyncio.Event()
        self._inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._stopping = False
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._listeners: dict[str, Listener] = {}
        self._events: dict[str, type[Event] | None] = {}

    # -- names -> code, only through the bus's registrations --------------------------------

    def _load_names(self) -> None:
        self._listeners = {listener.name: listener for listener in self.bus.listeners()}
        events: dict[str, type[Event] | None] = {}
        keys = self.bus.registered_types()
        roots = [k for k in keys if issubclass(k, Event)]
        mixins = tuple(k for k in keys if not issubclass(k, Event))
        seen: set[type] = set()
        stack: list[type] = [*roots]
        if mixins:
            stack.append(Event)
        while stack:
            cls = stack.pop()
            if cls in seen:
                continue
            seen.add(cls)
            stack.extend(cls.__subclasses__())
            if not issubclass(cls, Event) or not self.bus.routes_for(cls):
                continue
            other = events.get(cls.event_name, cls)
            events[cls.event_name] = cls if other is cls else None  # None: ambiguous
        self._events = events

    def _resolve(self, envelope: _wire.Envelope) -> tuple[type[Event], Listener]:
        cls = self._events.get(envelope.event_name, _UNKNOWN)
        if cls is _UNKNOWN:
            self._load_names()  # an event class imported since: look again, once
            cls = self._events.get(envelope.event_name, _UNKNOWN)
        if cls is _UNKNOWN:
            raise _wire.PoisonMessage(
                f"unknown event {envelope.event_name!r}: no event class of that name has "
                "listeners in this worker's provider"
            )
        if cls is None:
            raise _wire.PoisonMessage(
                f"ambiguous event {envelope.event_name!r}: several event classes of this "
                "worker share that name"
            )
        listener = self._listeners.get(envelope.listener)
        if listener is None:
            raise _wire.PoisonMessage(
                f"unknown listener {envelope.listener!r}: not registered in this worker's provider"
            )
        assert isinstance(cls, type)
        if listener not in self.bus._table.lookup(cls):
            raise _wire.PoisonMessage(
                f"listener {envelope.listener!r} does not listen to {envelope.event_name!r} "
                "in this worker's provider"
            )
        return cls, listener

    # -- running ----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, hurry: asyncio.Event | None = None) -> WorkerReport:
        """Consume until ``stop`` is set, then shut down gracefully (``hurry``: skip grace)."""
        self._load_names()
        async with self.bus:
            self._watch_connection()
            channel = await self.driver.connection.channel(publisher_confirms=False)
            await channel.set_qos(prefetch_count=self.concurrency)
            topology = self.driver.topology
            queue = await channel.declare_queue(
                topology.queue, durable=True, arguments=topology.work_arguments()
            )
            runners = [
                asyncio.create_task(self._runner(), name=f"eventbus-job-{i}")
                for i in range(self.concurrency)
            ]
            ticker = asyncio.create_task(self._tick(), name="eventbus-throughput")
            try:
                tag = await queue.consume(self._deliver)
                self.consuming.set()
                logger.info(
                    "eventbus worker consuming queue %r (concurrency %d, %d listener(s))",
                    topology.queue,
                    self.concurrency,
                    len(self._listeners),
                    extra=NO_JOB,
                )
                await stop.wait()
                await self._shutdown(channel, queue, tag, hurry)
            finally:
                ticker.cancel()
                for task in runners:
                    task.cancel()
                await asyncio.gather(ticker, *runners, return_exceptions=True)
                if not channel.is_closed:
                    with contextlib.suppress(Exception):
                        await channel.close()
        logger.info("eventbus worker stopped: %r", self.report, extra=NO_JOB)
        return self.report

    def _watch_connection(self) -> None:
        connection = self.driver.connection
        lost_at: list[float] = []

        def lost(_: Any, exc: BaseException | None = None) -> None:
            if self._stopping or connection.is_closed:
                return
            lost_at[:] = [time.monotonic()]
            logger.warning(
                "eventbus worker lost its RabbitMQ connection (%r); reconnecting",
                exc,
                extra=NO_JOB,
            )

        def back(_: Any) -> None:
            took = time.monotonic() - lost_at[0] if lost_at else 0.0
            logger.info("eventbus worker reconnected to RabbitMQ after %.3fs", took, extra=NO_JOB)

        connection.close_callbacks.add(lost)
        connection.reconnect_callbacks.add(back)

    async def _shutdown(
        self,
        channel: AbstractRobustChannel,
        queue: AbstractQueue,
        tag: str,
        hurry: asyncio.Event | None,
    ) -> None:
        self._stopping = True
        logger.info(
            "eventbus worker stopping: %d job(s) running, waiting up to %ss",
            self._busy,
            self.grace,
            extra=NO_JOB,
        )
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1.0):
                await queue.cancel(tag)
        waiters = [asyncio.ensure_future(self._idle.wait())]
        if hurry is not None:
            waiters.append(asyncio.ensure_future(hurry.wait()))
        await asyncio.wait(waiters, timeout=self.grace, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()
        unfinished = self._busy + self._inbox.qsize()
        self.report.requeued += unfinished
        if unfinished:
            logger.warning(
                "eventbus worker: %d job(s) running after the %ss grace period and %d "
                "prefetched are left unacked; closing the channel returns them to the queue",
                self._busy,
                self.grace,
                self._inbox.qsize(),
                extra=NO_JOB,
            )

    async def _deliver(self, message: AbstractIncomingMessage) -> None:
        self._inbox.put_nowait(message)

    async def _runner(self) -> None:
        inbox = self._inbox
        while True:
            message = await inbox.get()
            if self._stopping:
                inbox.put_nowait(message)  # not started: left unacked, requeued on close
                return
            self._busy += 1
            self._idle.clear()
            try:
                await self._handle(message)
            finally:
                self._busy -= 1
                if not self._busy:
                    self._idle.set()

    async def _tick(self) -> None:
        report = self.report
        last, last_at = 0, time.monotonic()
        while True:
            await asyncio.sleep(self.stats_interval)
            done = report.succeeded + report.failed + report.retried + report.dead_lettered
            now = time.monotonic()
            logger.info(
                "eventbus worker: %d job(s) in %.0fs (%.1f/s); %r",
                done - last,
                now - last_at,
                (done - last) / (now - last_at),
                report,
                extra=NO_JOB,
            )
            last, last_at = done, now

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        try:
            message.channel  # noqa: B018 - raises when the delivery channel was lost
        except aiormq.exceptions.ChannelInvalidStateError:
            self.report.stale += 1  # the broker requeued it already; don't run it twice
            return
        body = message.body
        envelope = None
        try:
            envelope, _ = _wire.decode_head(body)
            cls, listener = self._resolve(envelope)
            event = _wire.decode_event(cls, body)
        except _wire.PoisonMessage as exc:
            extra = NO_JOB if envelope is None else _envelope_record(envelope)
            await self._dead_letter(message, exc.reason, {}, message.message_id or "", extra)
            return
        bus = self.bus
        stats = bus.stats
        job = Job(envelope, bool(message.redelivered))
        ctx = copy_context()
        if envelope.context:
            ctx.run(_context.install, envelope.context)
        ctx.run(_current_job.set, job)
        started = time.perf_counter() if self.verbose else 0.0
        stats.running += 1
        try:
            error = await run_attempt(listener, event, ctx)
        finally:
            stats.running -= 1
        if error is None:
            stats.succeeded += 1
            self.report.succeeded += 1
            if self.verbose:
                logger.info(
                    "ran %s for %s (job %s, attempt %d) in %.1f ms",
                    listener.name,
                    event.event_name,
                    job.id,
                    job.attempt,
                    (time.perf_counter() - started) * 1000,
                    extra=job_record(event, listener, job.attempt),
                )
            await _ack(message, event.event_name, listener.name, job.attempt)  # no dict per job
            return
        await self._failed_attempt(message, envelope, event, listener, error, ctx)

    async def _failed_attempt(
        self,
        message: AbstractIncomingMessage,
        envelope: _wire.Envelope,
        event: Event,
        listener: Listener,
        error: BaseException,
        ctx: Context,
    ) -> None:
        policy = listener.policy
        attempt = envelope.attempt
        extra = job_record(event, listener, attempt)
        if attempt < policy.tries:
            delay = policy.delay(attempt)
            self.bus.job_retrying(listener, event, error, attempt, delay)
            body = _wire.encode(
                job=envelope.job_id,
                event_id=envelope.event_id,
                event_name=envelope.event_name,
                listener=envelope.listener,
                attempt=attempt + 1,
                dispatched_at=envelope.dispatched_at,
                context=envelope.context,
                data=event.model_dump_json().encode(),
            )
            try:
                topology = self.driver.topology
                if delay > 0:
                    target = await topology.declare_delay(self.driver.connection, delay)
                else:
                    target = topology.queue
                await self.driver.publish(
                    body, target, message_id=envelope.job_id, what=f"the retry of {envelope!r}"
                )
            except (BrokerError, aiormq.exceptions.AMQPError, OSError) as exc:
                why = f"could not queue the retry of {envelope!r}: {exc!r}"
                await _give_back(message, why, extra)
                return
            self.report.retried += 1
            await _ack(message, **extra)
            return
        # In the job's context, so failed() sees the dispatcher's context and current_job().
        await _drive(self.bus.job_failed(listener, event, error, attempt), ctx)
        self.report.failed += 1
        headers: dict[str, Any] = {
            ERROR_TYPE_HEADER: qualified_name(type(error)),
            ERROR_HEADER: str(error)[:1000],
            ATTEMPTS_HEADER: attempt,
        }
        await self._dead_letter(message, "failed", headers, envelope.job_id, extra)

    async def _dead_letter(
        self,
        message: AbstractIncomingMessage,
        reason: str,
        headers: dict[str, Any],
        job: str,
        extra: Mapping[str, Any],
    ) -> None:
        headers[REASON_HEADER] = reason
        if reason != "failed":
            logger.error(
                "dead-lettering message %s from queue %r: %s",
                job or "(no id)",
                self.driver.queue,
                reason,
                extra=extra,
            )
        try:
            await self.driver.publish(
                message.body,
                self.driver.topology.dead,
                message_id=job or f"dead-{time.time_ns()}",
                headers=headers,
                what=f"the dead-letter of {job or 'a message'}",
            )
        except (BrokerError, aiormq.exceptions.AMQPError, OSError) as exc:
            await _give_back(message, f"could not dead-letter {job}: {exc!r}", extra)
            return
        self.report.dead_lettered += 1
        await _ack(message, **extra)


class _Unknown:
    pass


_UNKNOWN: Any = _Unknown()


async def _ack(
    message: AbstractIncomingMessage,
    event_name: str | None,
    listener: str | None,
    attempt: int | None,
) -> None:
    try:
        await message.ack()
    except aiormq.exceptions.ChannelInvalidStateError:
        # The channel was lost while the job ran: the broker has requeued it, and it will
        # run again (at least once). Nothing to do here.
        logger.warning(
            "could not ack job %s: its channel closed; the broker will redeliver it",
            message.message_id,
            extra={"event_name": event_name, "listener": listener, "attempt": attempt},
        )


async def _give_back(message: AbstractIncomingMessage, why: str, extra: Mapping[str, Any]) -> None:
    logger.error("%s; returning the job to the queue", why, extra=extra)
    with contextlib.suppress(aiormq.exceptions.ChannelInvalidStateError):
        await message.nack(requeue=True)


def _envelope_record(envelope: _wire.Envelope) -> dict[str, Any]:
    """What a job's envelope names, for a message that cannot be run (no event, no listener)."""
    return record(envelope.event_name, envelope.listener, envelope.attempt)
