"""Running one attempt of a listener inside a given :class:`contextvars.Context`.

The hot path: ``start_attempt`` runs the first step inline (most listeners finish there),
and ``_InContext`` drives the rest with each step inside the job's context, so a listener's
context changes stay its own without a task per listener. Which BaseExceptions are the
listener's failure and which are a real cancellation is decided here, once, for every driver.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Awaitable, Coroutine, Generator
from contextvars import Context
from types import CoroutineType
from typing import TYPE_CHECKING, Any

import anyio

from ._errors import ListenerBaseException

if TYPE_CHECKING:
    from ._event import Event
    from ._listener import Listener

__all__ = [
    "cancels_caller",
    "clear_self_cancel",
    "finish_attempt",
    "run_attempt",
    "run_in_context",
    "start_attempt",
]


class _InContext:
    """Await a coroutine whose every step runs inside ``ctx``.

    Running each ``send``/``throw`` through ``ctx.run`` gives a listener its own context
    without a task per listener; whatever the coroutine yields (asyncio futures, trio traps)
    passes through untouched, so cancellation and timeouts work as usual on both backends.
    """

    __slots__ = ("coro", "ctx", "first")

    def __init__(self, coro: Coroutine[Any, Any, Any], ctx: Context, first: Any) -> None:
        self.coro = coro
        self.ctx = ctx
        self.first = first

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, run = self.coro, self.ctx.run
        yielded = self.first
        try:
            while True:
                try:
                    value = yield yielded
                except GeneratorExit:
                    raise
                except BaseException as exc:  # delivered by the loop: forward it
                    try:
                        yielded = run(coro.throw, exc)
                    except StopIteration as stop:
                        return stop.value
                else:
                    try:
                        yielded = run(coro.send, value)
                    except StopIteration as stop:
                        return stop.value
        finally:
            coro.close()


async def _drive(awaitable: Awaitable[Any], ctx: Context) -> Any:
    """Run ``awaitable`` to completion with each step inside ``ctx``."""
    if type(awaitable) is not CoroutineType and not isinstance(awaitable, Coroutine):
        awaitable = _as_coroutine(awaitable)  # (the ABC check alone costs ~200 ns)
    try:
        first = ctx.run(awaitable.send, None)
    except StopIteration as stop:  # the common case: done without suspending
        return stop.value
    return await _InContext(awaitable, ctx, first)


async def _as_coroutine(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def _listener_failure(exc: BaseException) -> Exception | None:
    """``exc`` (not an Exception) as the listener's failure, or None when it must propagate.

    KeyboardInterrupt and SystemExit always propagate, and so does a cancellation of the
    caller: one from an enclosing cancel scope (the effective deadline is -inf then) or, on
    asyncio, a pending ``Task.cancel()`` request. Anything else the listener raised itself.
    """
    if isinstance(exc, KeyboardInterrupt | SystemExit):
        return None
    if cancels_caller(exc):
        return None
    return ListenerBaseException(exc)


def _failure_or_raise(exc: BaseException) -> Exception:
    """The listener's failure for ``exc``; re-raises a real cancellation or an exit."""
    failure = _listener_failure(exc)
    if failure is None:
        raise exc
    return failure


def cancels_caller(exc: BaseException) -> bool:
    """True when ``exc`` is the async backend's cancellation and really cancels the caller."""
    try:
        cancelled = anyio.get_cancelled_exc_class()
    except Exception:  # pragma: no cover - no async library running
        return False
    if not isinstance(exc, cancelled):
        return False
    if anyio.current_effective_deadline() == -math.inf:
        return True
    task = _asyncio_task()
    return task is not None and task.cancelling() > 0


def _asyncio_task() -> Any:
    """The current asyncio task, or None (trio; asyncio is only imported if it is in use)."""
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return None
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running asyncio loop: trio
        return None


def clear_self_cancel() -> None:
    """Drop the ``Task.cancel()`` requests a listener made on the farm's own worker task.

    Left in place they would make anyio's cancel scopes on that task misjudge later
    cancellations (it compares ``Task.cancelling()`` with its value on entry).
    """
    task = _asyncio_task()
    if task is not None:
        while task.cancelling():
            task.uncancel()


async def run_attempt(listener: Listener, event: Event, ctx: Context) -> Exception | None:
    """Run one attempt of ``listener`` for ``event`` inside ``ctx``; return what it raised.

    Cancellation of the *caller* is never swallowed, nor KeyboardInterrupt or SystemExit. A
    timeout becomes :class:`TimeoutError`; any other BaseException the listener raised is
    returned as a :class:`ListenerBaseException`.
    """
    make = listener.make
    try:
        coro = ctx.run(make, event) if listener.make_in_context else make(event)
        if listener.policy.timeout is None or not listener.is_async:  # threads time themselves
            await _drive(coro, ctx)
        else:
            with anyio.fail_after(listener.policy.timeout):
                await _drive(coro, ctx)
    except Exception as exc:
        return exc
    except BaseException as exc:
        return _failure_or_raise(exc)
    return None


def start_attempt(
    listener: Listener, event: Event, ctx: Context
) -> Exception | Coroutine[Any, Any, Exception | None] | None:
    """Begin one attempt with its first step run inline, without a coroutine frame.

    Most listeners finish in that step. Returns ``None`` when the attempt succeeded, the
    exception when it failed, or a coroutine to await for the rest (which returns either).
    The hot paths (``dispatch_now``, the farm's workers) call this instead of awaiting
    :func:`run_attempt` for every job. BaseExceptions are treated as in :func:`run_attempt`.
    """
    if listener.policy.timeout is not None or listener.make_in_context:
        return run_attempt(listener, event, ctx)
    try:
        coro = listener.make(event)
        first = ctx.run(coro.send, None)  # type: ignore[attr-defined]
    except StopIteration:
        return None
    except Exception as exc:
        return exc
    except BaseException as exc:
        return _failure_or_raise(exc)
    return finish_attempt(coro, ctx, first)  # type: ignore[arg-type]


async def finish_attempt(
    coro: Coroutine[Any, Any, Any], ctx: Context, first: Any
) -> Exception | None:
    """The rest of an attempt whose first step (see :func:`start_attempt`) suspended."""
    try:
        await _InContext(coro, ctx, first)
    except Exception as exc:
        return exc
    except BaseException as exc:
        return _failure_or_raise(exc)
    return None


#: Public name of :func:`_drive`: await ``awaitable`` with each step inside ``ctx``.
run_in_context = _drive
