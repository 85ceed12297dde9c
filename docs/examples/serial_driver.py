"""docs/writing-a-driver.md's complete driver (tested by tests/test_writing_a_driver.py)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import Context

import anyio

from eventbus import Event, FarmNotRunning, Listener, RegistrationError
from eventbus.drivers.base import Driver, Job, run_attempt, set_current_job

Item = tuple[Listener, Event, Context, Job]


class SerialDriver(Driver):
    name = "serial"  # one worker: each job runs after the one before it (retries at the back)

    def __init__(self) -> None:
        self._queued: list[Item] = []
        self._waiting: list[Item] = []  # retries in their delay
        self._running: list[Item] = []
        self._wake = anyio.Event()
        self._unfinished = 0
        self._done = anyio.Event()
        self._tg: anyio.abc.TaskGroup | None = None

    def check_registration(self, listener: Listener, key: type) -> None:
        if listener.policy.timeout is None:  # one worker: a stuck job would stop them all
            raise RegistrationError(f"{listener.name}: the serial driver needs a timeout")

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                tg.start_soon(self._work, tg)
                yield
                await self.join()  # drain: every accepted job finishes
                tg.cancel_scope.cancel()
        finally:  # whatever was cancelled is reported, never lost silently
            self._tg = None
            for state in ("queued", "waiting", "running"):
                items: list[Item] = getattr(self, f"_{state}")
                while items:
                    listener, event, _, job = items.pop()
                    self.bus.stats.running -= state == "running"
                    self.bus.job_dropped(listener, event, state, job.attempt)

    async def submit(self, event: Event, listeners: tuple[Listener, ...], context: Context) -> None:
        if self._tg is None:
            raise FarmNotRunning(f"{self.bus!r}: use `async with bus:` to run jobs")
        event_id = uuid.uuid4().hex
        for listener in listeners:
            job = Job(uuid.uuid4().hex, event_id, event.event_name, listener.name, 1)
            self._unfinished += 1
            self._queued.append((listener, event, context.copy(), job))  # its own context
            self._wake.set()

    async def join(self) -> None:
        while self._unfinished:
            self._done = anyio.Event()
            await self._done.wait()

    async def _work(self, tg: anyio.abc.TaskGroup) -> None:
        while True:
            if not self._queued:
                self._wake = anyio.Event()
                await self._wake.wait()
                continue
            listener, event, ctx, job = item = self._queued.pop(0)
            self._running.append(item)
            set_current_job(ctx, job)  # what current_job() returns inside the listener
            self.bus.stats.running += 1
            error = await run_attempt(listener, event, ctx)  # with the listener's timeout
            self.bus.stats.running -= 1
            self._running.remove(item)
            if error is None:
                self.bus.stats.succeeded += 1
            else:
                delay = await self.bus.attempt_failed(listener, event, error, job.attempt, ctx)
                if delay is not None:  # None: final, already logged and reported
                    again = Job(job.id, job.event_id, job.event_name, job.listener, job.attempt + 1)
                    self._waiting.append((listener, event, ctx, again))
                    tg.start_soon(self._later, delay, self._waiting[-1])
                    continue  # still unfinished: the retry is this job
            self._unfinished -= 1
            if not self._unfinished:
                self._done.set()

    async def _later(self, delay: float, item: Item) -> None:
        await anyio.sleep(delay)  # waits here, not in the worker
        self._waiting.remove(item)
        self._queued.append(item)
        self._wake.set()
