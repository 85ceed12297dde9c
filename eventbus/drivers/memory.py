"""The ``memory`` driver: every job crosses the wire format, inside this process.

``dispatch`` encodes each job exactly as a broker driver would (:func:`._runner.build`: the
event's JSON round trip, the context snapshot, the size limit), and in-process workers run
the bytes with the shared job runner (:class:`._runner.Runner`): decoded, found by name in
the bus's registrations, run in a fresh context that holds only the ``eventbus.context`` keys
the message carries. So whatever could not travel to a RabbitMQ worker fails here, at the
same point and with the same error, while a test suite or a dev server still needs no broker:

- an event field with no JSON form, a context value that is not JSON: ``dispatch`` raises
  :class:`~eventbus.EventNotSerializable`; an oversized message :class:`~eventbus.EventTooLarge`;
- a listener defined inside a function, two listeners or two event classes sharing a name:
  registration raises :class:`~eventbus.RegistrationError`.

Retries wait for their delay without holding a worker; a job whose last attempt failed (or
that no worker could run) is kept in :attr:`MemoryDriver.dead` (bounded). Leaving
``async with bus`` drains, like the farm: every accepted job runs, up to ``drain_timeout``
seconds, then the rest are cancelled and reported through ``bus.job_dropped``. Runs on
asyncio and trio (anyio).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import Context
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import anyio
from anyio.abc import TaskGroup

from .._checks import check_count, check_limit
from .._errors import FarmNotRunning
from .._log import logger
from . import _runner
from ._runner import Dead, Retry, Runner, WireNames
from .base import Driver

if TYPE_CHECKING:
    from .._event import Event
    from .._listener import Listener

__all__ = ["DeadJob", "MemoryDriver"]


class DeadJob(NamedTuple):
    """A job no worker will run again: its message body, why, and the dead-letter headers."""

    body: bytes
    reason: str
    headers: dict[str, Any]


class MemoryDriver(Driver):
    """Jobs through the wire format, run by ``concurrency`` in-process workers."""

    name = "memory"
    #: ``EventBus(driver="memory", drain_timeout=...)`` passes it on (the driver registry).
    bus_options: ClassVar[frozenset[str]] = frozenset({"drain_timeout"})

    def __init__(
        self,
        *,
        concurrency: int = 10,
        max_message_size: int = 1024 * 1024,
        drain_timeout: float | None = 30.0,
        keep_dead: int = 1000,
    ) -> None:
        check_count(concurrency, "MemoryDriver: concurrency")
        check_count(max_message_size, "MemoryDriver: max_message_size (bytes)")
        self.drain_timeout = check_limit(drain_timeout, "MemoryDriver: drain_timeout", zero_ok=True)
        check_count(keep_dead, "MemoryDriver: keep_dead")
        self.concurrency = concurrency
        self.max_message_size = max_message_size
        #: The last ``keep_dead`` dead jobs, oldest first; ``dead_count`` counts them all.
        self.dead: deque[DeadJob] = deque(maxlen=keep_dead)
        self.dead_count = 0
        self._names = WireNames(self.name)
        self._sendable: set[type] = set()
        self._tg: TaskGroup | None = None
        self._runner: Runner | None = None
        self._queue: deque[bytes] = deque()
        self._waiting: set[bytes] = set()  # retries in their delay (identity: bodies differ)
        self._running: set[bytes] = set()
        self._wakeups: deque[anyio.Event] = deque()
        self._unfinished = 0
        self._joiners: list[anyio.Event] = []

    def describe(self) -> dict[str, Any]:
        return {
            "driver": self.name,
            "concurrency": self.concurrency,
            "max_message_size": self.max_message_size,
            "drain_timeout": self.drain_timeout,
        }

    def check_registration(self, listener: Listener, key: type) -> None:
        self._names.check(listener, key, self.bus)

    # -- lifecycle --------------------------------------------------------------------------

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        if self._tg is not None:
            raise RuntimeError(f"the memory driver of {self.bus!r} is already running")
        self._runner = Runner(self.bus, max_message_size=self.max_message_size)
        self._runner.names.load()
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                empty = Context()  # workers hold no context of the caller: only the message's
                for slot in range(self.concurrency):
                    empty.run(self._spawn, tg, f"eventbus-memory-{slot}")
                try:
                    yield
                finally:
                    with anyio.CancelScope(shield=True):
                        await self._drain()
                    tg.cancel_scope.cancel()
        finally:
            self._tg = None
            self._report_leftovers()

    def _spawn(self, tg: TaskGroup, name: str) -> None:
        tg.start_soon(self._worker, name=name)

    async def _drain(self) -> None:
        if not self._unfinished:
            return
        with anyio.move_on_after(math.inf if self.drain_timeout is None else self.drain_timeout):
            await self.join()
        if self._unfinished:
            logger.error(
                "memory driver: drain timed out after %ss with %d job(s) unfinished; "
                "cancelling them",
                self.drain_timeout,
                self._unfinished,
                extra={"event_name": None, "listener": None, "attempt": None},
            )

    def _report_leftovers(self) -> None:
        """Jobs that never finished: report each (never dropped silently)."""
        leftovers = [
            *(("queued", body) for body in self._queue),
            *(("waiting to retry", body) for body in self._waiting),
            *(("running", body) for body in self._running),
        ]
        self.bus.stats.queued -= len(self._queue)
        self._queue.clear()
        self._waiting.clear()
        self._running.clear()
        self._unfinished = 0
        runner = self._runner
        for state, body in leftovers:
            try:
                assert runner is not None
                envelope, _, listener = _runner.decode(runner.names, body)
            except Exception:  # pragma: no cover - it decoded when it was queued
                continue
            assert envelope.event is not None
            self.bus.job_dropped(listener, envelope.event, state, envelope.attempt)
        self._wake_joiners()

    # -- producing --------------------------------------------------------------------------

    async def submit(self, event: Event, listeners: tuple[Listener, ...], context: Context) -> None:
        if self._tg is None:
            raise FarmNotRunning(
                f"{self.bus!r} cannot queue {event.event_name!r}: the memory driver is not "
                "running. Start it with `async with bus:` or `FastAPI(lifespan=bus.lifespan)`"
            )
        cls = type(event)
        if cls not in self._sendable:
            self._names.claim_event(cls, self.bus, "dispatching")
            self._sendable.add(cls)
        jobs = _runner.build(
            event,
            listeners,
            context,
            self.max_message_size,
            " (MemoryDriver(max_message_size=...))",
        )
        for _, body in jobs:
            self._unfinished += 1
            self._put(body)

    def _put(self, body: bytes) -> None:
        self._queue.append(body)
        self.bus.stats.queued += 1
        if self._wakeups:
            self._wakeups.popleft().set()

    async def join(self) -> None:
        while self._unfinished:
            waiter = anyio.Event()
            self._joiners.append(waiter)
            await waiter.wait()

    def _finish(self) -> None:
        self._unfinished -= 1
        if not self._unfinished:
            self._wake_joiners()

    def _wake_joiners(self) -> None:
        joiners, self._joiners = self._joiners, []
        for waiter in joiners:
            waiter.set()

    # -- consuming --------------------------------------------------------------------------

    async def _worker(self) -> None:
        queue, runner = self._queue, self._runner
        assert runner is not None
        while True:
            if not queue:
                waiter = anyio.Event()
                self._wakeups.append(waiter)
                try:
                    await waiter.wait()
                finally:
                    if waiter in self._wakeups:
                        self._wakeups.remove(waiter)
                continue
            body = queue.popleft()
            self.bus.stats.queued -= 1
            self._running.add(body)
            result = await runner.run(body)
            self._running.discard(body)
            if type(result) is Retry:
                self._waiting.add(result.body)
                assert self._tg is not None
                self._tg.start_soon(self._later, result)
                continue  # still unfinished: the retry is this job
            if type(result) is Dead:
                self._dead(body, result)
            self._finish()

    async def _later(self, retry: Retry) -> None:
        """A retry waits here, not in a worker."""
        await anyio.sleep(retry.delay)
        self._waiting.discard(retry.body)
        self._put(retry.body)

    def _dead(self, body: bytes, dead: Dead) -> None:
        self.dead_count += 1
        self.dead.append(DeadJob(body, dead.reason, dead.headers))
        if not dead.failed:  # a failed listener was reported by bus.attempt_failed already
            logger.error(
                "memory driver: dead job %s: %s",
                dead.job or "(no id)",
                dead.reason,
                extra=dead.extra,
            )
