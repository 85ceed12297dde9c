"""The ``async_farm`` driver: a bounded pool of workers in an anyio task group.

``dispatch`` appends jobs to a deque and returns; it only yields to the event loop when the
queue is full. ``max_concurrency`` workers take jobs off the deque and only yield when it is
empty, or when the farm's shared time slice is spent (so a backlog of instant listeners
cannot starve the loop, however many workers there are). That keeps a job at a few deque
operations plus the listener itself: no task, no stream, no lock per job.

Nothing a listener raises ends a worker: exceptions and stray BaseExceptions are its
failure; KeyboardInterrupt and SystemExit stop the farm (drained, reported, re-raised as is).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import Context
from typing import TYPE_CHECKING, Any, Literal

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup, TaskStatus

from .._attempt import clear_self_cancel, start_attempt
from .._checks import check_count, check_limit
from .._errors import FarmNotRunning, ListenerBaseException, QueueFull, RegistrationError
from .._job import LocalJob as Job
from .._job import running_by_task
from .._log import NO_JOB, job_record, logger
from .._names import qualified_name
from .._threads import reserve_threads
from .base import BUS_OPTIONS, Driver

if TYPE_CHECKING:
    from .._event import Event
    from .._listener import Listener

__all__ = ["AsyncFarm"]


#: Seconds the whole farm may run jobs back to back before it lets other tasks in. Shared by
#: all workers: with a backlog every worker is ready in the same loop iteration, so a
#: per-worker budget would multiply the stall by ``max_concurrency``.
_SLICE = 0.005

#: Jobs a worker runs between looks at the clock (and right after anything that suspended).
_CHECK_EVERY = 8


#: What :meth:`AsyncFarm._escaped` returns when the job stopped the farm.
_STOPPED = BaseException("the farm stopped")


def _job_of(listener: Listener, event: Event, context: Context, first: Job) -> Job:
    """A job after the first of one dispatch: its own context copy, the first's event id."""
    job = Job(listener, event, 1)
    job.context = context
    job.share_event_with(first)
    return job


class AsyncFarm(Driver):
    """Run jobs in this process on at most ``max_concurrency`` workers.

    ``max_queue`` bounds the jobs waiting (memory stays bounded however fast producers
    dispatch); when it is full ``dispatch`` waits for room, or raises :class:`QueueFull` with
    ``on_full="raise"``. Leaving ``async with bus`` drains: every accepted job runs, up to
    ``drain_timeout`` seconds, after which the rest are cancelled and reported as dropped.
    """

    name = "async_farm"
    bus_options = BUS_OPTIONS

    def __init__(
        self,
        max_concurrency: int = 100,
        max_queue: int = 10_000,
        on_full: Literal["wait", "raise"] = "wait",
        drain_timeout: float | None = 30.0,
    ) -> None:
        check_count(max_concurrency, "AsyncFarm: max_concurrency")
        check_count(max_queue, "AsyncFarm: max_queue")
        if on_full not in ("wait", "raise"):
            raise ValueError(f"on_full must be 'wait' or 'raise', got {on_full!r}")
        drain_timeout = check_limit(drain_timeout, "AsyncFarm: drain_timeout", zero_ok=True)
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self.on_full = on_full
        self.drain_timeout = drain_timeout
        self._jobs: deque[Job] = deque()
        self._idle: deque[anyio.Event] = deque()  # workers waiting for a job
        self._room: deque[anyio.Event] = deque()  # producers waiting for queue space
        self._joiners: list[anyio.Event] = []
        self._unfinished = 0  # queued + waiting to retry + running
        self._accepting = False
        self._draining = False  # stopping: only our own jobs may still dispatch
        self._worker_ids: set[int] = set()
        self._tg: TaskGroup | None = None
        self._body: anyio.CancelScope | None = None  # around the body of `async with bus`
        self._waiting_workers = 0  # workers waiting for room to dispatch a follow-up
        self._slice_end = 0.0  # perf_counter() when the current time slice is spent
        self._slice_gen = 0  # bumped by each worker that opens a new slice
        # Why the farm is stopping early (KeyboardInterrupt/SystemExit from a listener), the
        # exception to re-raise, and the reason given for jobs dropped when it stops.
        self._stop_reason: str | None = None
        self._stop_error: BaseException | None = None
        self._drop_reason = "the farm stopped"

    def check_registration(self, listener: Listener, key: type) -> None:
        """With ``on_full="raise"``, refuse an event type that would need more than max_queue.

        Its events could never be queued (``dispatch`` would always raise QueueFull); with
        ``on_full="wait"`` they are queued a job at a time as room frees up.
        """
        if self.on_full != "raise":
            return
        bus = self.bus
        stack = [key]
        while stack:  # key and every subclass of it: they all hear this listener
            cls = stack.pop()
            stack.extend(cls.__subclasses__())
            count = len(bus.registered_on(cls) | {listener})
            if count > self.max_queue:
                raise RegistrationError(
                    f"{listener.name} cannot listen to {qualified_name(cls)}: that event type "
                    f"would reach {count} listeners, more than the max_queue={self.max_queue} "
                    f"of {self.bus!r} with on_full='raise', so its events could never be "
                    f"queued; raise max_queue to at least {count} or use on_full='wait'"
                )

    def describe(self) -> dict[str, Any]:
        return {
            "driver": self.name,
            "max_concurrency": self.max_concurrency,
            "max_queue": self.max_queue,
            "on_full": self.on_full,
            "drain_timeout": self.drain_timeout,
        }

    # -- lifecycle ------------------------------------------------------------------------

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        if self._tg is not None:
            raise RuntimeError(f"the farm of {self.bus!r} is already running")
        error: Exception | None = None
        release_threads = reserve_threads(self.max_concurrency)  # a thread for every worker
        self._stop_reason = self._stop_error = None
        self._drop_reason = "the farm stopped"
        try:
            async with anyio.create_task_group() as host:
                pool: anyio.CancelScope = await host.start(self._pool)
                self._accepting = True
                try:
                    # Its own scope, so a listener's KeyboardInterrupt can stop the body
                    # without cancelling the drain below.
                    with anyio.CancelScope() as self._body:
                        yield
                except Exception as exc:
                    # Re-raised outside the task group: the caller's own exception, not an
                    # ExceptionGroup wrapping it (cancellation passes through untouched).
                    error = exc
                finally:
                    self._body = None
                    self._accepting = False
                    self._draining = True
                    self._wake_producers()
                    try:
                        if self.drain_timeout is None:
                            await self._drain_unbounded()
                        else:
                            with anyio.CancelScope(shield=True):
                                await self._drain(self.drain_timeout)
                    finally:
                        self._draining = False
                        pool.cancel()
        finally:
            # Also after an error or a crash: the farm can start again and nothing still
            # queued goes unreported.
            self._tg = None
            release_threads()
            self._report_leftovers()
        stop, self._stop_error = self._stop_error, None
        if stop is not None:
            try:
                raise stop  # as raised by the listener: no ExceptionGroup around it
            finally:
                stop = None
        if error is not None:
            try:
                raise error
            finally:
                error = None

    async def _pool(self, *, task_status: TaskStatus[anyio.CancelScope]) -> None:
        """Own the workers and retry timers, shielded: only the end of the drain stops them.

        Cancelling the code around ``async with bus`` therefore still drains (within
        ``drain_timeout``) instead of cancelling every job at once.
        """
        with anyio.CancelScope(shield=True) as scope:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                self._worker_ids.clear()
                self._idle.clear()  # the wake-ups of a previous run's workers
                for slot in range(self.max_concurrency):
                    tg.start_soon(self._worker, name=f"eventbus-worker-{slot}")
                task_status.started(scope)

    async def _drain(self, timeout: float) -> None:
        if not self._unfinished:
            return
        with anyio.move_on_after(timeout) as scope:
            await self.join()
        if scope.cancelled_caught:
            self._drop_reason = self._stopping("the drain deadline passed")
            logger.error(
                "drain timed out after %ss with %d job(s) unfinished; cancelling them",
                timeout,
                self._unfinished,
                extra={**NO_JOB, "unfinished": self._unfinished},
            )

    async def _drain_unbounded(self) -> None:
        """``drain_timeout=None``: wait for every job, unless the code around is cancelled."""
        if not self._unfinished:
            return
        try:
            await self.join()
        except anyio.get_cancelled_exc_class():
            self._drop_reason = self._stopping(
                "the code around `async with bus` was cancelled during the drain"
            )
            logger.error(
                "drain cancelled with %d job(s) unfinished; cancelling them",
                self._unfinished,
                extra={**NO_JOB, "unfinished": self._unfinished},
            )
            raise

    def _stopping(self, reason: str) -> str:
        return reason if self._stop_reason is None else f"{self._stop_reason}, and {reason}"

    def _wake_producers(self) -> None:
        # Producers waiting for room when the farm stops learn it now, not never.
        while self._room:
            self._room.popleft().set()

    def _stop(self, job: Job, exc: BaseException, where: str) -> None:
        """KeyboardInterrupt or SystemExit from a listener: stop the farm, re-raise it later.

        The body of ``async with bus`` is cancelled, the farm drains (within
        ``drain_timeout``), and then the exception is raised as is from ``async with bus``.
        """
        name = type(exc).__name__
        if self._stop_error is None:
            self._stop_error = exc
            self._stop_reason = f"the farm stopped: {name} raised by {where}"
            self._accepting = False
            self._draining = True  # the farm's own jobs may still dispatch follow-ups
            self._wake_producers()
            logger.critical(
                "%s raised %s; stopping the farm (draining for at most %ss)",
                where,
                name,
                self.drain_timeout,
                exc_info=exc,
                extra=job_record(job.event, job.compiled, job.attempt),
            )
            if self._body is not None:
                self._body.cancel()

    def _closed(self) -> bool:
        """No new jobs, except follow-ups dispatched by jobs of the draining farm itself."""
        if self._accepting:
            return False
        return not (self._draining and anyio.get_current_task().id in self._worker_ids)

    def _report_leftovers(self) -> None:
        """Jobs still queued after the workers stopped: report each, never drop silently."""
        while self._jobs:
            job = self._jobs.popleft()
            self.bus.stats.queued -= 1
            self._finish()
            self.bus.job_dropped(
                job.compiled, job.event, "queued", job.attempt, reason=self._drop_reason
            )

    # -- producing ------------------------------------------------------------------------

    async def submit(self, event: Event, listeners: tuple[Listener, ...], context: Context) -> None:
        if not self._accepting and self._closed():
            if self._stop_reason is not None:
                raise FarmNotRunning(
                    f"{self.bus!r} cannot queue {event.event_name!r}: {self._stop_reason}"
                )
            raise FarmNotRunning(
                f"{self.bus!r} cannot queue {event.event_name!r}: its async farm is not running. "
                "Start it with `async with bus:`, `FastAPI(lifespan=bus.lifespan)`, or set "
                "QUEUE_DRIVER=sync to run listeners inline."
            )
        jobs = self._jobs
        count = len(listeners)
        if len(jobs) + count <= self.max_queue:  # the fast path: room for all, never yields
            job = Job(listeners[0], event, 1)
            job.context = context
            jobs.append(job)
            if count == 1:  # _accepted(1) inlined: the common case pays no extra call
                self._unfinished += 1
                self.bus.stats.queued += 1
                if self._idle:
                    self._idle.popleft().set()
                return
            for listener in listeners[1:]:
                jobs.append(_job_of(listener, event, context.copy(), job))
            self._accepted(count)
            return
        if self.on_full == "raise":
            if count > self.max_queue:
                raise QueueFull(
                    f"cannot queue {event.event_name!r}: it has {count} listeners and "
                    f"max_queue is {self.max_queue}, so it can never be queued with "
                    "on_full='raise'; raise max_queue to at least "
                    f"{count} or use on_full='wait'"
                )
            raise QueueFull(
                f"cannot queue {event.event_name!r}: {len(jobs)} of {self.max_queue} job slots "
                f"are taken and it needs {count}; raise max_queue, add workers, or use "
                "on_full='wait' to wait for room"
            )
        await self._submit_waiting(event, listeners, context)

    async def _submit_waiting(
        self, event: Event, listeners: tuple[Listener, ...], context: Context
    ) -> None:
        first = Job(listeners[0], event, 1)
        first.context = context
        pending = deque([first])
        pending.extend(_job_of(lst, event, context.copy(), first) for lst in listeners[1:])
        total = len(pending)
        # One of our own workers dispatching a follow-up: if every other worker is waiting
        # to dispatch too, nothing would ever make room, so it goes past max_queue instead.
        own = anyio.get_current_task().id in self._worker_ids
        while pending:
            while len(self._jobs) >= self.max_queue:
                if own and self._waiting_workers >= self.max_concurrency - 1:
                    break
                waiter = anyio.Event()
                self._room.append(waiter)
                if own:
                    self._waiting_workers += 1
                try:
                    await waiter.wait()
                except BaseException:
                    self._pass_room_on(waiter)
                    self._not_queued(pending, total, "the dispatching task was cancelled")
                    raise
                finally:
                    if own:
                        self._waiting_workers -= 1
                if self._closed():
                    if len(pending) == total:
                        raise FarmNotRunning(
                            f"{self.bus!r} stopped while {event.event_name!r} waited for room "
                            "in its queue; the event was not queued"
                        )
                    self._not_queued(pending, total, "the farm stopped")
                    return
            self._jobs.append(pending.popleft())
            self._accepted(1)

    def _not_queued(self, pending: deque[Job], total: int, reason: str) -> None:
        """Report the jobs of a partly queued event that will never be queued."""
        if len(pending) == total:
            return  # none of it was queued: dispatch raises, nothing to report
        for job in pending:
            self.bus.job_dropped(job.compiled, job.event, "not queued", 1, reason=reason)

    def _pass_room_on(self, waiter: anyio.Event) -> None:
        # A cancelled producer must not swallow the wake-up meant for the next one.
        if waiter in self._room:
            self._room.remove(waiter)
        elif self._room:
            self._room.popleft().set()

    def _accepted(self, count: int) -> None:
        self._unfinished += count
        self.bus.stats.queued += count
        idle = self._idle
        while count and idle:
            idle.popleft().set()
            count -= 1

    # -- consuming ------------------------------------------------------------------------

    async def _worker(self) -> None:
        self._worker_ids.add(anyio.get_current_task().id)
        while True:
            try:
                await self._work()
            except anyio.get_cancelled_exc_class() as exc:
                # Only a real cancellation (the end of the drain) ends a worker. A listener
                # that cancelled its own task without awaiting afterwards lands here.
                if anyio.current_effective_deadline() == -math.inf:
                    raise
                clear_self_cancel()
                logger.error(
                    "a farm worker caught %r outside any job (a listener cancelled its own "
                    "task?); the worker goes on",
                    exc,
                    extra=NO_JOB,
                )

    async def _work(self) -> None:
        jobs, idle, room = self._jobs, self._idle, self._room
        stats = self.bus.stats
        clock = time.perf_counter
        # current_job() is the job registered for this worker task (eventbus._job): one dict
        # store per job, where a ContextVar set in each job's context would allocate.
        running, me = running_by_task, anyio.get_current_task().id
        try:
            await self._work_loop(jobs, idle, room, stats, clock, running, me)
        finally:
            running.pop(me, None)

    async def _work_loop(
        self,
        jobs: deque[Job],
        idle: deque[anyio.Event],
        room: deque[anyio.Event],
        stats: Any,
        clock: Any,
        running: dict[int, Any],
        me: int,
    ) -> None:
        countdown = 0  # jobs until the next look at the clock
        job: Job | None = None
        exc: BaseException | None = None
        outcome: Any = None
        while True:
            if not jobs:
                job = exc = outcome = None  # an idle worker pins nothing of its last job
                running.pop(me, None)
                gen = self._slice_gen
                waiter = anyio.Event()
                idle.append(waiter)
                try:
                    await waiter.wait()
                except BaseException:
                    if waiter in idle:  # no dispatch may wake a worker that is gone
                        idle.remove(waiter)
                    raise
                if self._slice_gen == gen:  # first back after this yield: a new slice
                    self._slice_gen = gen + 1
                    self._slice_end = clock() + _SLICE
                    countdown = _CHECK_EVERY
                else:
                    countdown = 0
                continue
            if countdown:
                countdown -= 1
            elif clock() < self._slice_end:
                countdown = _CHECK_EVERY
            else:
                await self._next_slice()
                countdown = _CHECK_EVERY
                continue  # the queue may have changed meanwhile
            job = jobs.popleft()
            if room:
                room.popleft().set()
            stats.queued -= 1
            stats.running += 1
            running[me] = job
            try:
                outcome = start_attempt(job.compiled, job.event, job.context)
                if outcome is None or isinstance(outcome, Exception):
                    exc = outcome
                else:
                    exc = await outcome
                    countdown = 0  # it suspended: the slice may be gone
            except BaseException as error:
                stats.running -= 1
                exc = self._escaped(job, error)
                if exc is None:
                    raise  # a real cancellation: the drain deadline passed
                if exc is _STOPPED:
                    continue
            else:
                stats.running -= 1
            if exc is None:
                stats.succeeded += 1
                del job.context  # a job a listener kept must not pin its context
                self._unfinished -= 1  # _finish() inlined for the common case
                if not self._unfinished and self._joiners:
                    joiners, self._joiners = self._joiners, []
                    for waiter in joiners:
                        waiter.set()
            else:
                countdown = 0
                try:
                    await self._failed_attempt(job, exc)
                except BaseException as error:
                    self._hook_escaped(job, error)

    async def _next_slice(self) -> None:
        """The farm's time slice is spent: yield; the first worker back opens the next one."""
        clock = time.perf_counter
        while True:
            gen = self._slice_gen
            await anyio.lowlevel.checkpoint()
            if self._slice_gen == gen:
                self._slice_gen = gen + 1
                self._slice_end = clock() + _SLICE
                return
            if clock() < self._slice_end:  # another worker opened one with time left
                return

    def _escaped(self, job: Job, error: BaseException) -> BaseException | None:
        """A BaseException escaped a job (``run_attempt`` returns what is a failure).

        Returns None for a real cancellation (the job is reported as dropped and the caller
        re-raises), ``_STOPPED`` for KeyboardInterrupt/SystemExit (the job is reported and the
        farm stops), or the failure to handle: the listener cancelled its own task.
        """
        if isinstance(error, KeyboardInterrupt | SystemExit):
            self._finish()
            where = f"listener {job.compiled.name} handling {job.event.event_name!r}"
            self._stop(job, error, where)
            self.bus.job_dropped(
                job.compiled,
                job.event,
                "running",
                job.attempt,
                reason=f"it raised {type(error).__name__}, which stops the farm",
            )
            return _STOPPED
        if anyio.current_effective_deadline() == -math.inf:
            self._finish()
            self.bus.job_dropped(
                job.compiled, job.event, "running", job.attempt, reason=self._drop_reason
            )
            return None
        # Nothing cancelled the farm: the listener cancelled the worker's task itself.
        clear_self_cancel()
        return ListenerBaseException(error)

    def _hook_escaped(self, job: Job, error: BaseException) -> None:
        """A BaseException from ``failed()`` or ``on_failure``: never the end of a worker."""
        if isinstance(error, KeyboardInterrupt | SystemExit):
            self._stop(job, error, f"a failure hook of {job.compiled.name}")
            return
        if anyio.current_effective_deadline() == -math.inf:
            raise error
        clear_self_cancel()
        logger.error(
            "a failure hook of %s raised %r while handling the failure of %s; ignored",
            job.compiled.name,
            error,
            job.event.event_name,
            extra=job_record(job.event, job.compiled, job.attempt),
        )

    async def _failed_attempt(self, job: Job, exc: BaseException) -> None:
        delay: float | None = None
        try:
            delay = await self.bus.attempt_failed(
                job.compiled, job.event, exc, job.attempt, job.context
            )
        finally:
            if delay is None:  # final (already reported), or the report itself raised
                del job.context
                self._finish()
        if delay is None:
            return
        job.attempt += 1
        self.bus.stats.queued += 1
        if delay <= 0:
            self._requeue(job)
        else:
            assert self._tg is not None
            self._tg.start_soon(self._retry_later, job, delay)

    async def _retry_later(self, job: Job, delay: float) -> None:
        requeued = False
        try:
            await anyio.sleep(delay)
            self._requeue(job)
            requeued = True
        finally:
            if not requeued:  # cancelled by the drain deadline while waiting
                self.bus.stats.queued -= 1
                self._finish()
                self.bus.job_dropped(
                    job.compiled,
                    job.event,
                    "waiting to retry",
                    job.attempt,
                    reason=self._drop_reason,
                )

    def _requeue(self, job: Job) -> None:
        # Retries were accepted already: they go past max_queue rather than wait for room,
        # which could deadlock a pool whose every worker is retrying.
        self._jobs.append(job)
        if self._idle:
            self._idle.popleft().set()

    def _finish(self) -> None:
        self._unfinished -= 1
        if not self._unfinished and self._joiners:
            joiners, self._joiners = self._joiners, []
            for waiter in joiners:
                waiter.set()

    async def join(self) -> None:
        while self._unfinished:
            waiter = anyio.Event()
            self._joiners.append(waiter)
            await waiter.wait()
