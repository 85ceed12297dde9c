"""The consumer behind ``eventbus work``: run queued RabbitMQ jobs, at least once.

A :class:`Worker` consumes the bus's queue with ``prefetch = concurrency`` and runs each job
through the broker-neutral job runner (:mod:`eventbus.drivers._runner`: one decode, the
listener's timeout, a fresh context holding the dispatcher's ``eventbus.context`` and
``current_job()``, ``bus.attempt_failed`` for the retry-or-fail decision); this module is the
aio-pika glue around it: acks, retries published to delay queues, dead letters, isolation.
A message is acked only after its job finished, or after the copy that replaces it (the
retry in a delay queue, or the dead-letter) was confirmed by the broker — so a crash at any
point leaves the job in RabbitMQ, to be redelivered.

Event classes and listeners are found only by name, in the bus's own registrations. A
message naming anything else, or that does not decode, goes straight to the dead-letter
queue with the reason in its headers.

A redelivered message (its worker died, or lost its connection, holding it) never runs
beside other jobs: see :mod:`._isolation` for how the job that kills its worker is
proven and dead-lettered while the innocent ones prefetched beside it complete.

Nothing a message or a listener does ends a job runner: whatever escapes a job (a listener's
``CancelledError`` or ``BaseException``, a bad retry delay, an envelope that cannot be
re-encoded, a broker error while acking) is logged with the job's fields, and the message is
dead-lettered with a reason, or returned for redelivery when the broker connection is the
cause. A runner that dies anyway (a bug) makes :meth:`Worker.run` raise
:class:`WorkerCrashed`, so ``eventbus work`` exits non-zero for its supervisor to restart it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING, Any

import aiormq
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustChannel

from ..._checks import check_count, check_limit, check_seconds
from ..._errors import BrokerError, JobKilledWorker, ListenerBaseException, WorkerCrashed
from ..._job import Job, current_job
from ..._log import NO_JOB, logger
from ..._names import qualified_name
from ..._threads import reserve_threads
from .. import _runner as wire_runner
from . import _isolation
from ._isolation import CRASHES_HEADER
from .driver import RabbitMQDriver

if TYPE_CHECKING:
    from ..._bus import EventBus

__all__ = [
    "ATTEMPTS_HEADER",
    "CRASHES_HEADER",
    "ERROR_HEADER",
    "ERROR_TYPE_HEADER",
    "REASON_HEADER",
    "Job",
    "JobKilledWorker",
    "Worker",
    "WorkerCrashed",
    "WorkerReport",
    "current_job",
]


#: Headers a dead-lettered message carries (besides ``x-death`` from the broker).
REASON_HEADER = wire_runner.REASON_HEADER
ERROR_TYPE_HEADER = wire_runner.ERROR_TYPE_HEADER
ERROR_HEADER = wire_runner.ERROR_HEADER
ATTEMPTS_HEADER = wire_runner.ATTEMPTS_HEADER
_MAX_REASON = wire_runner.MAX_REASON
#: RabbitMQ's largest ``x-message-ttl`` (ms), so the largest retry delay a delay queue holds.
_MAX_TTL_MS = 2**32 - 1
#: Errors that mean the broker connection, not the message, is at fault: give the job back.
_BROKER_ERRORS: tuple[type[BaseException], ...] = (
    BrokerError,
    aiormq.exceptions.AMQPError,
    aiormq.exceptions.ChannelInvalidStateError,  # a RuntimeError, not an AMQPError
    ConnectionError,
    OSError,
    TimeoutError,
)
#: Also what escapes an ack or publish whose connection was lost: aiormq cancels them.
_CONNECTION_ERRORS = (*_BROKER_ERRORS, asyncio.CancelledError)


class WorkerReport:
    """What a worker did, for logs and tests."""

    __slots__ = (
        "alone",
        "dead_lettered",
        "failed",
        "moved",
        "requeued",
        "retried",
        "stale",
        "succeeded",
    )

    def __init__(self) -> None:
        self.succeeded = 0
        self.failed = 0
        self.retried = 0
        self.dead_lettered = 0
        self.requeued = 0  # in flight or prefetched at shutdown, left to the broker
        self.stale = 0  # delivered on a channel lost since: the broker requeued them
        self.alone = 0  # suspects (redelivered) run with nothing else in this process
        self.moved = 0  # re-published to the back of the queue instead of being held

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)}" for name in self.__slots__)
        return f"WorkerReport({inner})"


class Worker:
    """Consume ``bus``'s RabbitMQ queue and run its jobs, ``concurrency`` at a time.

    ``await worker.run(stop)`` connects (``async with bus``), consumes until ``stop`` is set,
    then stops consuming, re-publishes the prefetched jobs it did not start, lets running
    jobs finish for up to ``grace`` seconds, cancels the rest and closes the channel so the
    broker requeues every unacked job.

    A redelivered job runs alone (:mod:`._isolation`); one whose worker process
    died ``crash_limit`` times while running it alone is dead-lettered, reason
    ``"crashed its worker N times"``, after ``failed()`` is called with
    :class:`JobKilledWorker`.
    """

    def __init__(
        self,
        bus: EventBus,
        *,
        concurrency: int = 10,
        grace: float = 30.0,
        verbose: bool = False,
        stats_interval: float = 10.0,
        crash_limit: int = 2,
        give_up_after: float | None = 300.0,
    ) -> None:
        if not isinstance(bus.driver, RabbitMQDriver):
            raise TypeError(
                f"{bus!r} uses the {bus.driver.name!r} driver; a worker consumes RabbitMQ, "
                "create the bus with driver='rabbitmq' (or QUEUE_DRIVER=rabbitmq)"
            )
        # Finite and in range, before anything else (NaN slips past `grace < 0`).
        check_count(concurrency, "Worker: concurrency")
        check_seconds(grace, "Worker: grace", zero_ok=True)
        check_seconds(stats_interval, "Worker: stats_interval")
        check_count(crash_limit, "Worker: crash_limit")
        check_limit(give_up_after, "Worker: give_up_after")
        self.bus = bus
        self.driver: RabbitMQDriver = bus.driver
        self.concurrency = concurrency
        self.grace = grace
        self.verbose = verbose
        self.stats_interval = stats_interval
        self.crash_limit = crash_limit
        #: Seconds without a broker connection after which the worker stops with
        #: :class:`WorkerCrashed` (exit non-zero) instead of idling; ``None``: retry forever.
        self.give_up_after = give_up_after
        self.report = WorkerReport()
        self.consuming = asyncio.Event()
        self._inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._stopping = False
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()
        # Isolation (._isolation): while a suspect waits for the jobs already
        # running, or runs alone, nothing else is started; deliveries wait in _held.
        self._suspended = False
        self._held: list[AbstractIncomingMessage] = []
        self._quiet = asyncio.Event()  # set when at most one runner is busy
        self._channel: AbstractRobustChannel | None = None
        self._queue: AbstractQueue | None = None
        self._tag: str | None = None
        self._alone_name = self._new_alone_name()
        self._alone_names: set[str] = set()  # declared: deleted at shutdown when empty
        self._last_copy: AbstractIncomingMessage | None = None
        self._alone: tuple[AbstractIncomingMessage, int, asyncio.Task[Any] | None] | None = None
        self.runner = wire_runner.Runner(
            bus,
            max_message_size=self.driver.max_message_size,
            max_delay=_MAX_TTL_MS / 1000,
            contain=self._contain,
            verbose=verbose,
        )
        self._cancelling = False  # the runners are being cancelled by run() itself
        self._crashed: list[str] = []
        self._crash = asyncio.Event()

    # -- running ----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, hurry: asyncio.Event | None = None) -> WorkerReport:
        """Consume until ``stop`` is set, then shut down gracefully (``hurry``: skip grace)."""
        self.runner.names.load()
        async with self.bus:
            self._watch_connection()
            channel = await self.driver.connection.channel(publisher_confirms=False)
            await channel.set_qos(prefetch_count=self.concurrency)
            topology = self.driver.topology
            queue = await channel.declare_queue(
                topology.queue, durable=True, arguments=topology.work_arguments()
            )
            self._channel = channel
            self._queue = queue
            runners = [
                asyncio.create_task(self._runner(), name=f"eventbus-job-{i}")
                for i in range(self.concurrency)
            ]
            for task in runners:
                task.add_done_callback(self._runner_ended)
            ticker = asyncio.create_task(self._tick(), name="eventbus-throughput")
            release_threads = reserve_threads(self.concurrency)  # a thread for every runner
            try:
                self._tag = await queue.consume(self._deliver)
                self.consuming.set()
                logger.info(
                    "eventbus worker consuming queue %r (concurrency %d, %d listener(s))",
                    topology.queue,
                    self.concurrency,
                    len(self.runner.names.listeners),
                    extra=NO_JOB,
                )
                await _first(stop.wait(), self._crash.wait())
                await self._shutdown(queue, hurry)
            finally:
                self._cancelling = True
                ticker.cancel()
                for task in runners:
                    task.cancel()
                await asyncio.gather(ticker, *runners, return_exceptions=True)
                release_threads()
                if not channel.is_closed:
                    copy = self._last_copy
                    with contextlib.suppress(Exception):
                        # Never while a copy is unacked: deleting its queue would drop it.
                        for name in self._alone_names if copy is None or copy.processed else ():
                            await channel.queue_delete(name, if_empty=True)
                    with contextlib.suppress(Exception):
                        await channel.close()
        if self._crashed:
            logger.critical(
                "eventbus worker stopped because %s; exiting so it can be restarted: %r",
                self._crashed[0],
                self.report,
                extra=NO_JOB,
            )
            raise WorkerCrashed(
                f"eventbus worker on queue {self.driver.queue!r} stopped: {self._crashed[0]}"
            )
        logger.info("eventbus worker stopped: %r", self.report, extra=NO_JOB)
        return self.report

    def _runner_ended(self, task: asyncio.Task[None]) -> None:
        if self._cancelling:
            return
        if self._stopping and not task.cancelled() and task.exception() is None:
            return  # returned at shutdown, leaving its message for the broker
        if task.cancelled():
            why = f"job runner {task.get_name()} was cancelled"
        else:
            why = f"job runner {task.get_name()} ended: {task.exception()!r}"
        self._fail(why)

    def _fail(self, why: str) -> None:
        """The worker cannot go on as it is: stop it, and make run() raise."""
        logger.critical("eventbus worker: %s", why, extra=NO_JOB)
        self._crashed.append(why)
        self._crash.set()

    def _watch_connection(self) -> None:
        connection = self.driver.connection
        lost_at: list[float] = []
        loop = asyncio.get_running_loop()
        give_up: list[asyncio.TimerHandle] = []

        def gone() -> None:
            if not self._stopping:
                self._fail(
                    f"no RabbitMQ connection for {self.give_up_after}s (give_up_after); "
                    "its consumers cannot run jobs"
                )

        def lost(_: Any, exc: BaseException | None = None) -> None:
            if self._stopping or connection.is_closed:
                return
            lost_at[:] = [time.monotonic()]
            logger.warning(
                "eventbus worker lost its RabbitMQ connection (%r); reconnecting",
                exc,
                extra=NO_JOB,
            )
            if self.give_up_after is not None and not give_up:
                give_up.append(loop.call_later(self.give_up_after, gone))

        def back(_: Any) -> None:
            # A copy returned to the old alone queue by the drop expires into the work
            # queue by itself; a new name keeps the next alone run from taking it instead.
            self._alone_name = self._new_alone_name()
            took = time.monotonic() - lost_at[0] if lost_at else 0.0
            while give_up:
                give_up.pop().cancel()
            logger.info("eventbus worker reconnected to RabbitMQ after %.3fs", took, extra=NO_JOB)

        connection.close_callbacks.add(lost)
        connection.reconnect_callbacks.add(back)

    async def _shutdown(self, queue: AbstractQueue, hurry: asyncio.Event | None) -> None:
        self._stopping = True
        logger.info(
            "eventbus worker stopping: %d job(s) running, waiting up to %ss",
            self._busy,
            self.grace,
            extra=NO_JOB,
        )
        await self._stop_consuming(1.0)
        # Not started: back to the queue as they came, so a deploy does not turn every
        # prefetched job into a redelivered suspect that must then run alone.
        await self._move_inbox()
        waiters = [asyncio.ensure_future(self._idle.wait())]
        if hurry is not None:
            waiters.append(asyncio.ensure_future(hurry.wait()))
        await asyncio.wait(waiters, timeout=self.grace, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()
        await self._return_alone()
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
            if self._suspended:
                # A suspect is about to run alone: hold this one, unacked, until it has.
                # The consumer keeps its credit, so the worker never holds more than its
                # prefetch, and it is not cancelled (see _suspect for why).
                self._held.append(message)
                continue
            self._busy += 1
            self._idle.clear()
            try:
                if message.redelivered or (message.headers and CRASHES_HEADER in message.headers):
                    await self._suspect(message)
                else:
                    await self._handle(message)
            except asyncio.CancelledError as exc:
                if self._cancelling:
                    raise
                await self._escaped(message, exc)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:  # nothing a message does may end this runner
                await self._escaped(message, exc)
            finally:
                self._busy -= 1
                if self._busy <= 1:
                    self._quiet.set()
                    if not self._busy:
                        self._idle.set()

    # -- isolation: the job that kills its worker is found and dead-lettered ---------------

    def _new_alone_name(self) -> str:
        return f"{self.driver.topology.queue}.alone.{uuid.uuid4().hex[:12]}"

    async def _stop_consuming(self, timeout: float) -> None:
        tag, self._tag = self._tag, None
        if tag is None or self._queue is None:
            return
        with contextlib.suppress(Exception):
            async with asyncio.timeout(timeout):
                await self._queue.cancel(tag)

    async def _move_inbox(self) -> None:
        held, self._held = self._held, []
        for message in held:
            await self._move(message)
        inbox = self._inbox
        while not inbox.empty():
            await self._move(inbox.get_nowait())

    async def _move(self, message: AbstractIncomingMessage) -> None:
        """Re-publish ``message`` to the back of the work queue (confirmed), then ack it.

        A suspect keeps its suspect mark: the copy loses the broker's ``redelivered``.
        """
        try:
            message.channel  # noqa: B018 - raises when the delivery channel was lost
        except aiormq.exceptions.ChannelInvalidStateError:
            self.report.stale += 1
            return
        headers = _isolation.own_headers(message.headers)
        if message.redelivered and CRASHES_HEADER not in headers:
            headers[CRASHES_HEADER] = 0
        job = message.message_id or ""
        try:
            await self.driver.publish(
                message.body,
                self.driver.topology.queue,
                message_id=job or f"moved-{time.time_ns()}",
                headers=headers or None,
                what=f"the move of {job or 'a message'} to the back of the queue",
            )
        except (BrokerError, aiormq.exceptions.AMQPError, OSError) as exc:
            why = f"could not move {job} to the back of the queue: {exc!r}"
            await _give_back(message, why, NO_JOB)
            return
        self.report.moved += 1
        await _ack(message, None, None, None)

    async def _suspect(self, message: AbstractIncomingMessage) -> None:
        """A redelivered message: dead-letter it if proven a crasher, else run it alone."""
        try:
            message.channel  # noqa: B018 - raises when the delivery channel was lost
        except aiormq.exceptions.ChannelInvalidStateError:
            self.report.stale += 1  # the broker requeued it already; don't run it twice
            return
        count = _isolation.crashes(message.headers) or 0
        if count >= self.crash_limit:
            await self._crashed_out(message, count)
            return
        # The consumer is not cancelled meanwhile: on a quorum queue, a basic.cancel makes
        # the broker return every delivery still on its way to this consumer, flagged
        # redelivered (x-delivery-count + 1) though no worker ever received it. Each would
        # be a false suspect whose own run alone cancelled again: under load one connection
        # drop became 100-200 serial runs alone and ~1 600 moves (tests/
        # test_rabbitmq_faults.py::test_broker_closing_connections_loses_no_confirmed_job).
        # Deliveries are held instead (_runner), bounded by the prefetch; if this process
        # dies, they come back as suspects without a strike (only the alone copy earns one).
        self._suspended = True
        try:
            while self._busy > 1:  # the jobs that were running when the suspect came
                self._quiet.clear()
                await self._quiet.wait()
            if self._stopping:
                await self._move(message)
                return
            await self._run_alone(message, count)
        finally:
            self._suspended = False
            held, self._held = self._held, []
            for other in held:  # run now; a suspect among them runs alone in turn
                self._inbox.put_nowait(other)

    async def _run_alone(self, message: AbstractIncomingMessage, count: int) -> None:
        """Move the suspect into this worker's alone queue, one strike up, and run that copy.

        If this process dies now, the copy is the only job it held, so the strike it carries
        back into the work queue (the alone queue's TTL dead-letters it there) is earned.
        """
        job = message.message_id or ""
        name = self._alone_name
        headers = _isolation.own_headers(message.headers)
        headers[CRASHES_HEADER] = count + 1
        try:
            channel = self._channel
            assert channel is not None
            # Not robust: after a reconnect the old queue must not come back (see back()).
            alone = await channel.declare_queue(
                name,
                durable=True,
                arguments=_isolation.alone_arguments(self.driver.queue),
                robust=False,
            )
            self._alone_names.add(name)
            await self.driver.publish(
                message.body,
                name,
                message_id=job or f"alone-{time.time_ns()}",
                headers=headers,
                what=f"the move of {job or 'a message'} to run alone",
            )
            copy = await alone.get(no_ack=False, fail=False, timeout=self.driver.publish_timeout)
        except (BrokerError, aiormq.exceptions.AMQPError, OSError, TimeoutError) as exc:
            await _give_back(message, f"could not run {job} alone: {exc!r}", NO_JOB)
            return
        await _ack(message, None, None, None)
        if copy is None:
            # Expired before basic.get (a very slow broker): it is back in the work queue
            # with a strike it did not earn; crash_limit > 1 absorbs one such accident.
            logger.warning(
                "job %s expired from alone queue %r before it could run; it is back in %r",
                job,
                name,
                self.driver.queue,
                extra=NO_JOB,
            )
            return
        self.report.alone += 1
        self._last_copy = copy
        self._alone = (copy, count, asyncio.current_task())
        try:
            await self._handle(copy)
        finally:
            self._alone = None

    async def _return_alone(self) -> None:
        """At shutdown, a job still running alone goes back without a strike: no crash."""
        if self._alone is None:
            return
        copy, count, task = self._alone
        if task is not None:
            self._cancelling = True  # the grace is over: this cancel is ours, not a failure
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if copy.processed:
            return
        headers = _isolation.own_headers(copy.headers)
        headers[CRASHES_HEADER] = count
        job = copy.message_id or ""
        try:
            await self.driver.publish(
                copy.body,
                self.driver.topology.queue,
                message_id=job or f"moved-{time.time_ns()}",
                headers=headers,
                what=f"the return of {job or 'a message'} that was running alone",
            )
        except (BrokerError, aiormq.exceptions.AMQPError, OSError) as exc:
            logger.warning(
                "could not return job %s (running alone at shutdown) without a strike: %r; "
                "its alone queue returns it with one",
                job,
                exc,
                extra=NO_JOB,
            )
            return
        self.report.requeued += 1
        await _ack(copy, None, None, None)

    async def _crashed_out(self, message: AbstractIncomingMessage, count: int) -> None:
        """``count`` proven crashes: ``failed()`` once, in the job's context, then dead."""
        try:
            message.channel  # noqa: B018 - raises when the delivery channel was lost
        except aiormq.exceptions.ChannelInvalidStateError:
            self.report.stale += 1
            return
        dead = await self.runner.crashed(message.body, count, job=message.message_id or "")
        if dead.failed:
            self.report.failed += 1
            dead.headers[CRASHES_HEADER] = count
        await self._dead_letter(message, dead)

    async def _escaped(self, message: AbstractIncomingMessage, exc: BaseException) -> None:
        """Something escaped a job: settle its message so it is neither stuck nor lost."""
        if self._cancelling:
            raise asyncio.CancelledError
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            await self._rescind(task)
        if message.processed:
            logger.error(
                "eventbus worker: error after job %s was settled",
                message.message_id,
                exc_info=exc,
                extra=NO_JOB,
            )
            return
        if isinstance(exc, _CONNECTION_ERRORS):
            await _give_back(
                message, f"broker error during job {message.message_id}: {exc!r}", NO_JOB
            )
            return
        logger.error(
            "eventbus worker: unexpected error running job %s",
            message.message_id,
            exc_info=exc,
            extra=NO_JOB,
        )
        headers: dict[str, Any] = {
            ERROR_TYPE_HEADER: qualified_name(type(exc)),
            ERROR_HEADER: str(exc)[:_MAX_REASON],
        }
        try:
            await self._dead_letter(
                message,
                wire_runner.Dead(
                    f"worker error: {type(exc).__qualname__}: {exc}",
                    headers,
                    message.message_id or "",
                    NO_JOB,
                ),
            )
        except BaseException as again:
            if isinstance(again, asyncio.CancelledError) and self._cancelling:
                raise
            if isinstance(again, _CONNECTION_ERRORS):
                # The channel is going: the broker requeues the message with it.
                await _give_back(message, f"could not dead-letter job: {again!r}", NO_JOB)
                return
            # Neither run nor dead-lettered nor given back: this worker is not sound.
            self._fail(f"could not settle job {message.message_id} after {exc!r}: {again!r}")

    async def _contain(self, awaitable: Awaitable[Any]) -> Any:
        """Await ``awaitable``; return its result, or the exception it raised.

        A ``CancelledError`` that did not come from this worker's own shutdown (a listener
        raising it, or cancelling its own task) is the listener's failure, like any other
        exception; so are bare ``BaseException`` and ``GeneratorExit``. ``KeyboardInterrupt``
        and ``SystemExit`` still stop the process.
        """
        try:
            result = await awaitable
        except asyncio.CancelledError as exc:
            if self._cancelling:
                raise
            result = ListenerBaseException(exc)  # as the farm reports it
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            result = ListenerBaseException(exc)
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            await self._rescind(task)  # the listener cancelled its own task
        return result

    async def _rescind(self, task: asyncio.Task[Any]) -> None:
        """Withdraw cancel requests a listener made on the runner's task."""
        # Python 3.11 cannot withdraw a request not yet delivered: let it arrive here.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0)
        if self._cancelling:
            raise asyncio.CancelledError
        while task.cancelling():
            task.uncancel()

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
        # A suspect's copy lost the broker's flag; its header says it was delivered before.
        headers = message.headers
        result = await self.runner.run(
            message.body,
            redelivered=bool(message.redelivered) or bool(headers and CRASHES_HEADER in headers),
            job=message.message_id or "",
        )
        if type(result) is wire_runner.Done:
            self.report.succeeded += 1
            envelope = result.envelope
            await _ack(message, envelope.event_name, envelope.listener, envelope.attempt)
        elif type(result) is wire_runner.Retry:
            await self._retry(message, result)
        else:
            assert isinstance(result, wire_runner.Dead)
            if result.failed:
                self.report.failed += 1
            await self._dead_letter(message, result)

    async def _retry(self, message: AbstractIncomingMessage, retry: wire_runner.Retry) -> None:
        """Publish the next attempt to its delay queue (confirmed), then ack this one."""
        envelope = retry.envelope
        try:
            topology = self.driver.topology
            if retry.delay > 0:
                target = await topology.declare_delay(self.driver.connection, retry.delay)
            else:
                target = topology.queue
            await self.driver.publish(
                retry.body, target, message_id=envelope.job_id, what=f"the retry of {envelope!r}"
            )
        except _BROKER_ERRORS as exc:
            why = f"could not queue the retry of {envelope!r}: {exc!r}"
            await _give_back(message, why, retry.extra)
            return
        self.report.retried += 1
        await _ack(message, **retry.extra)

    async def _dead_letter(self, message: AbstractIncomingMessage, dead: wire_runner.Dead) -> None:
        reason, job, extra = dead.reason, dead.job, dead.extra
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
                headers=dead.headers,
                what=f"the dead-letter of {job or 'a message'}",
            )
        except _BROKER_ERRORS as exc:
            await _give_back(message, f"could not dead-letter {job}: {exc!r}", extra)
            return
        self.report.dead_lettered += 1
        await _ack(message, **extra)


async def _first(*awaitables: Awaitable[Any]) -> None:
    """Wait until the first of ``awaitables`` is done; cancel the others."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


async def _ack(
    message: AbstractIncomingMessage,
    event_name: str | None,
    listener: str | None,
    attempt: int | None,
) -> None:
    try:
        await message.ack()
    except _BROKER_ERRORS as exc:
        # The connection or channel was lost while the job ran (ChannelInvalidStateError,
        # AMQPConnectionError, a reset socket): the broker requeues every unacked message of
        # a closed channel, so the job runs again (at least once). Nothing is lost here.
        logger.warning(
            "could not ack job %s (%r): its channel is closing; the broker will redeliver it",
            message.message_id,
            exc,
            extra={"event_name": event_name, "listener": listener, "attempt": attempt},
        )
        # Should the channel survive the error after all, an unacked message would hold its
        # prefetch slot for good: hand it back instead (at least once: it runs again).
        with contextlib.suppress(*_CONNECTION_ERRORS):
            message.channel  # noqa: B018 - raises when the channel is closed
            await message.nack(requeue=True)


async def _give_back(message: AbstractIncomingMessage, why: str, extra: Mapping[str, Any]) -> None:
    logger.error("%s; returning the job to the queue", why, extra=extra)
    # A closed channel has returned the message to the queue already.
    with contextlib.suppress(*_BROKER_ERRORS):
        await message.nack(requeue=True)
