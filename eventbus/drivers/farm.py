"""The ``async_farm`` driver: a bounded pool of workers in an anyio task group.

``dispatch`` appends jobs to a deque and returns; it only yields to the event loop when the
queue is full. ``max_concurrency`` workers take jobs off the deque and only yield when it is
empty (or every few hundred jobs, so a flood of instant listeners cannot starve the loop).
That keeps a job at a few deque operations plus the listener itself: no task, no stream,
no lock per job.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import Context
from typing import TYPE_CHECKING, Any, Literal

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup, TaskStatus

from .._checks import check_count, check_limit
from .._errors import FarmNotRunning, QueueFull
from .._listener import start_attempt
from .._log import NO_JOB, logger
from .base import Driver

if TYPE_CHECKING:
    from .._event import Event
    from .._listener import Listener

__all__ = ["AsyncFarm"]


#: Jobs a worker runs back to back before it lets other tasks in.
_FAIRNESS_BATCH = 256


class Job:
    """One listener run for one event, with its own context and attempt number."""

    __slots__ = ("attempt", "context", "event", "listener")

    def __init__(self, listener: Listener, event: Event, context: Context, attempt: int) -> None:
        self.listener = listener
        self.event = event
        self.context = context
        self.attempt = attempt


class AsyncFarm(Driver):
    """Run jobs in this process on at most ``max_concurrency`` workers.

    ``max_queue`` bounds the jobs waiting (memory stays bounded however fast producers
    dispatch); when it is full ``dispatch`` waits for room, or raises :class:`QueueFull` with
    ``on_full="raise"``. Leaving ``async with bus`` drains: every accepted job runs, up to
    ``drain_timeout`` seconds, after which the rest are cancelled and reported as dropped.
    """

    name = "async_farm"

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
        try:
            async with anyio.create_task_group() as host:
                pool: anyio.CancelScope = await host.start(self._pool)
                self._accepting = True
                try:
                    yield
                except Exception as exc:
                    # Re-raised outside the task group: the caller's own exception, not an
                    # ExceptionGroup wrapping it (cancellation passes through untouched).
                    error = exc
                finally:
                    self._accepting = False
                    self._draining = True
                    self._wake_producers()
                    try:
                        with anyio.CancelScope(shield=True):
                            await self._drain()
                    finally:
                        self._draining = False
                        pool.cancel()
        finally:
            # Also after an error or a crash: the farm can start again and nothing still
            # queued goes unreported.
            self._tg = None
            self._report_leftovers()
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

    async def _drain(self) -> None:
        if not self._unfinished:
            return
        timeout = math.inf if self.drain_timeout is None else self.drain_timeout
        with anyio.move_on_after(timeout) as scope:
            await self.join()
        if scope.cancelled_caught:
            logger.error(
                "drain timed out after %ss with %d job(s) unfinished; cancelling them",
                self.drain_timeout,
                self._unfinished,
                extra={**NO_JOB, "unfinished": self._unfinished},
            )

    def _wake_producers(self) -> None:
        # Producers waiting for room when the farm stops learn it now, not never.
        while self._room:
            self._room.popleft().set()

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
            self.bus.job_dropped(job.listener, job.event, "queued", job.attempt)

    # -- producing ------------------------------------------------------------------------

    async def submit(self, event: Event, listeners: tuple[Listener, ...], context: Context) -> None:
        if not self._accepting and self._closed():
            raise FarmNotRunning(
                f"{self.bus!r} cannot queue {event.event_name!r}: its async farm is not running. "
                "Start it with `async with bus:`, `FastAPI(lifespan=bus.lifespan)`, or set "
                "QUEUE_DRIVER=sync to run listeners inline."
            )
        jobs = self._jobs
        count = len(listeners)
        if len(jobs) + count <= self.max_queue:  # the fast path: room for all, never yields
            if count == 1:  # _accepted(1) inlined: the common case pays no extra call
                jobs.append(Job(listeners[0], event, context, 1))
                self._unfinished += 1
                self.bus.stats.queued += 1
                if self._idle:
                    self._idle.popleft().set()
                return
            jobs.append(Job(listeners[0], event, context, 1))
            for listener in listeners[1:]:
                jobs.append(Job(listener, event, context.copy(), 1))
            self._accepted(count)
            return
        if self.on_full == "raise":
            raise QueueFull(
                f"cannot queue {event.event_name!r}: {len(jobs)} of {self.max_queue} job slots "
                f"are taken and it needs {count}; raise max_queue, add workers, or use "
                "on_full='wait' to wait for room"
            )
        await self._submit_waiting(event, listeners, context)

    async def _submit_waiting(
        self, event: Event, listeners: tuple[Listener, ...], context: Context
    ) -> None:
        pending = deque(
            Job(listener, event, context if i == 0 else context.copy(), 1)
            for i, listener in enumerate(listeners)
        )
        total = len(pending)
        while pending:
            while len(self._jobs) >= self.max_queue:
                waiter = anyio.Event()
                self._room.append(waiter)
                try:
                    await waiter.wait()
                except BaseException:
                    self._pass_room_on(waiter)
                    self._not_queued(pending, total, "the dispatching task was cancelled")
                    raise
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
            self.bus.job_dropped(job.listener, job.event, "not queued", 1, reason=reason)

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
        jobs, idle, room = self._jobs, self._idle, self._room
        stats = self.bus.stats
        bus = self.bus
        batch = 0
        exc: BaseException | None
        while True:
            if not jobs:
                batch = 0
                waiter = anyio.Event()
                idle.append(waiter)
                await waiter.wait()
                continue
            job = jobs.popleft()
            if room:
                room.popleft().set()
            stats.queued -= 1
            stats.running += 1
            finished = False
            try:
                outcome = start_attempt(job.listener, job.event, job.context)
                exc = (
                    outcome
                    if outcome is None or isinstance(outcome, Exception)
                    else (await outcome)
                )
                finished = True
            finally:
                stats.running -= 1
                if not finished:  # cancelled: the drain deadline passed
                    self._finish()
                    bus.job_dropped(job.listener, job.event, "running", job.attempt)
            if exc is None:
                stats.succeeded += 1
                self._unfinished -= 1  # _finish() inlined for the common case
                if not self._unfinished and self._joiners:
                    joiners, self._joiners = self._joiners, []
                    for waiter in joiners:
                        waiter.set()
            else:
                await self._failed_attempt(job, exc)
            batch += 1
            if batch >= _FAIRNESS_BATCH:
                batch = 0
                await anyio.lowlevel.checkpoint()

    async def _failed_attempt(self, job: Job, exc: BaseException) -> None:
        policy = job.listener.policy
        if job.attempt >= policy.tries:
            try:
                await self.bus.job_failed(job.listener, job.event, exc, job.attempt)
            finally:
                self._finish()
            return
        delay = policy.delay(job.attempt)
        self.bus.job_retrying(job.listener, job.event, exc, job.attempt, delay)
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
                self.bus.job_dropped(job.listener, job.event, "waiting to retry", job.attempt)

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
