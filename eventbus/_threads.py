"""Worker threads for plain ``def`` listeners and hooks: capacity, timeouts, abandonment.

A thread cannot be killed. So a thread listener's timeout is applied by the caller, which
stops waiting and *abandons* the thread; the thread reports itself when it ends later. The
capacity is per event loop: a base for ``dispatch_now`` and the sync driver, plus every
running farm's ``max_concurrency``, so no job times out waiting for a thread.
"""

from __future__ import annotations

import inspect
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import anyio
import anyio.to_thread
from anyio.lowlevel import RunVar

from ._log import logger, record

__all__ = ["BASE_THREADS", "EXPIRED", "ThreadRun", "call_hook", "reserve_threads", "run_in_thread"]


#: Threads for sync listeners and hooks outside any farm (``dispatch_now``, the sync driver),
#: as many as anyio's default; each running farm adds its ``max_concurrency``.
BASE_THREADS = 40


_thread_limiters: RunVar[tuple[anyio.CapacityLimiter, anyio.CapacityLimiter]] = RunVar(
    "eventbus.thread_limiters"
)


def _limiters() -> tuple[anyio.CapacityLimiter, anyio.CapacityLimiter]:
    """(our limiter, an unbounded one for anyio) of the running event loop."""
    try:
        return _thread_limiters.get()
    except LookupError:
        pair = (anyio.CapacityLimiter(BASE_THREADS), anyio.CapacityLimiter(math.inf))
        _thread_limiters.set(pair)
        return pair


def reserve_threads(count: int) -> Callable[[], None]:
    """Add room for ``count`` listener threads in this event loop; call the result to undo.

    A farm reserves its ``max_concurrency``, so each of its workers can always get a thread.
    """
    limiter = _limiters()[0]
    limiter.total_tokens += count

    def release() -> None:
        limiter.total_tokens = max(1, limiter.total_tokens - count)

    return release


class _Expired:
    def __repr__(self) -> str:
        return "EXPIRED"


#: What :func:`run_in_thread` returns when the timeout passed first.
EXPIRED: Any = _Expired()


class ThreadRun:
    """One call in a worker thread that the event loop may stop waiting for (abandon).

    The thread reports itself when it ends after being abandoned, with how late, so a
    listener or hook that outlived its timeout is never silent. ``attempt`` is filled in
    by the bus when it learns it (the thread itself does not know).
    """

    __slots__ = ("abandoned_at", "attempt", "done", "event_name", "listener", "lock", "what")

    def __init__(
        self, what: str | None, event_name: str, listener: str, attempt: int | None = None
    ) -> None:
        self.what = what
        self.event_name = event_name
        self.listener = listener
        self.attempt = attempt
        self.lock = threading.Lock()
        self.done = False
        self.abandoned_at: float | None = None

    def __call__(self, fn: Callable[..., Any], *args: Any) -> Any:  # in the worker thread
        try:
            result = fn(*args)
        except BaseException as exc:
            self._ended(exc)
            raise
        self._ended(None)
        return result

    def _ended(self, exc: BaseException | None) -> None:
        with self.lock:
            self.done = True
            abandoned_at = self.abandoned_at
        if abandoned_at is None:
            return
        late = time.monotonic() - abandoned_at
        logger.warning(
            "the abandoned thread of %s %s %.3fs after it was abandoned",
            self.what or f"{self.listener} handling {self.event_name}",  # (None: a listener)
            "returned" if exc is None else f"raised {exc!r}",
            late,
            exc_info=exc,
            extra={**record(self.event_name, self.listener, self.attempt), "late": late},
        )

    def abandon(self) -> None:
        """The loop stops waiting: from now on the thread reports when it ends."""
        with self.lock:
            if not self.done:
                self.abandoned_at = time.monotonic()


async def run_in_thread(
    run: ThreadRun, timeout: float | None, fn: Callable[..., Any], *args: Any
) -> Any:
    """``fn(*args)`` in a worker thread; :data:`EXPIRED` if ``timeout`` passed first.

    The timeout counts from when a thread is free, not from the wait for one. Cancelling
    the caller abandons the thread at once instead of waiting for it.
    """
    limiter, unbounded = _limiters()
    async with limiter:
        try:
            with anyio.move_on_after(math.inf if timeout is None else timeout):
                return await anyio.to_thread.run_sync(
                    run, fn, *args, abandon_on_cancel=True, limiter=unbounded
                )
        except BaseException:
            run.abandon()  # cancelled from outside (a no-op when the thread raised)
            raise
        run.abandon()
    return EXPIRED


def is_async_callable(fn: Any) -> bool:
    """An ``async def`` function, a partial of one, or an object with an async ``__call__``."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - async __call__ objects
    )


async def call_hook(
    hook: Callable[..., Any], args: tuple[Any, ...], timeout: float, run: ThreadRun
) -> bool:
    """Call a failure hook, bounded by ``timeout``; False if the timeout passed first.

    An ``async`` hook is awaited and cancelled at the deadline; a plain one runs in a
    worker thread (as sync listeners do), abandoned at the deadline. What the hook raises
    propagates.
    """
    if is_async_callable(hook):
        with anyio.move_on_after(timeout) as scope:
            await hook(*args)
        return not scope.cancelled_caught
    result = await run_in_thread(run, timeout, hook, *args)
    if result is EXPIRED:
        return False
    if inspect.isawaitable(result):  # a plain function that returned a coroutine
        with anyio.move_on_after(timeout) as scope:
            await result
        return not scope.cancelled_caught
    return True
