"""The raw pool baseline: the least a bounded in-process worker pool can do per job.

100 workers take jobs off a deque; ``put`` only yields when the deque is full and a worker
only yields when it is empty. Waiting uses the backend's cheapest native primitive (an
asyncio future, a trio Event), so this is the runtime's limit, not a strawman. With
``context=True`` each job carries ``contextvars.copy_context()`` taken at ``put`` and runs
every step of the handler inside it — what eventbus must do per job, minus everything else.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Generator
from contextlib import asynccontextmanager
from contextvars import Context, copy_context
from typing import Any

import anyio
import sniffio

Handler = Callable[[Any], Coroutine[Any, Any, Any]]


class Stepper:
    """Await ``coro`` with each of its steps run inside ``ctx`` (no task per job)."""

    __slots__ = ("coro", "ctx", "first")

    def __init__(self, coro: Coroutine[Any, Any, Any], ctx: Context, first: Any) -> None:
        self.coro, self.ctx, self.first = coro, ctx, first

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, run, out = self.coro, self.ctx.run, self.first
        while True:
            try:
                sent = yield out
            except BaseException as exc:
                try:
                    out = run(coro.throw, exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    out = run(coro.send, sent)
                except StopIteration as stop:
                    return stop.value


class RawPool:
    def __init__(self, workers: int = 100, max_queue: int = 10_000) -> None:
        self.workers = workers
        self.max_queue = max_queue
        self.jobs: deque[tuple[Any, ...]] = deque()
        self.idle: deque[Any] = deque()
        self.room: deque[Any] = deque()
        self.joiners: list[Any] = []
        self.unfinished = 0
        self._new_waiter: Callable[[], Any] = object
        self._wait: Callable[[Any], Any] = lambda w: w
        self._wake: Callable[[Any], None] = lambda w: None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[RawPool]:
        if sniffio.current_async_library() == "trio":
            import trio

            self._new_waiter = trio.Event
            self._wait = trio.Event.wait
            self._wake = trio.Event.set
        else:
            import asyncio

            loop = asyncio.get_running_loop()
            self._new_waiter = loop.create_future
            self._wait = _await_future
            self._wake = _resolve
        async with anyio.create_task_group() as tg:
            for _ in range(self.workers):
                tg.start_soon(self._worker)
            try:
                yield self
            finally:
                tg.cancel_scope.cancel()

    async def put(self, handler: Handler, event: Any) -> None:
        while len(self.jobs) >= self.max_queue:
            waiter = self._new_waiter()
            self.room.append(waiter)
            await self._wait(waiter)
        self.jobs.append((handler, event))
        self.unfinished += 1
        if self.idle:
            self._wake(self.idle.popleft())

    async def put_in_context(self, handler: Handler, event: Any) -> None:
        while len(self.jobs) >= self.max_queue:
            waiter = self._new_waiter()
            self.room.append(waiter)
            await self._wait(waiter)
        self.jobs.append((handler, event, copy_context()))
        self.unfinished += 1
        if self.idle:
            self._wake(self.idle.popleft())

    async def join(self) -> None:
        while self.unfinished:
            waiter = self._new_waiter()
            self.joiners.append(waiter)
            await self._wait(waiter)

    async def _worker(self) -> None:
        jobs, idle, room, wake = self.jobs, self.idle, self.room, self._wake
        new_waiter, wait = self._new_waiter, self._wait
        while True:
            if not jobs:
                waiter = new_waiter()
                idle.append(waiter)
                await wait(waiter)
                continue
            job = jobs.popleft()
            if room:
                wake(room.popleft())
            if len(job) == 2:
                await job[0](job[1])
            else:
                handler, event, ctx = job
                coro = ctx.run(handler, event)
                try:
                    first = ctx.run(coro.send, None)
                except StopIteration:
                    pass
                else:
                    await Stepper(coro, ctx, first)
            self.unfinished -= 1
            if not self.unfinished and self.joiners:
                joiners, self.joiners = self.joiners, []
                for waiter in joiners:
                    wake(waiter)


async def _await_future(future: Any) -> None:
    await future


def _resolve(future: Any) -> None:
    if not future.done():
        future.set_result(None)
