"""Listeners: classes with ``handle`` or plain functions, plus their retry/timeout policy.

:class:`Listener` is the compiled form the table stores: it knows how to make the coroutine
for one attempt as cheaply as possible, and :func:`run_attempt` runs that attempt inside a
given :class:`contextvars.Context` so a listener's context changes stay its own.
"""

from __future__ import annotations

import ast
import builtins
import functools
import importlib
import importlib.util
import inspect
import math
import sys
import threading
import time
import typing
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterable, Sequence
from contextvars import Context, copy_context
from types import CoroutineType, ModuleType, UnionType
from typing import Any, ClassVar

import anyio
import anyio.to_thread
from anyio.lowlevel import RunVar

from ._checks import check_count, check_limit
from ._event import Event
from ._log import logger, record

__all__ = [
    "EventListener",
    "Listener",
    "ListenerBaseException",
    "Policy",
    "RegistrationError",
    "UnresolvedAnnotation",
    "finish_attempt",
    "start_attempt",
    "listener_event_types",
    "run_attempt",
]


class RegistrationError(TypeError):
    """A listener, event key or provider was rejected when it was registered."""


class ListenerBaseException(Exception):
    """A listener raised a BaseException that is not an Exception; it is that listener's failure.

    A leaked ``asyncio.CancelledError`` (no cancellation of the caller behind it),
    ``GeneratorExit`` or a bare ``BaseException`` would otherwise tear down the farm or escape
    an :class:`ExceptionGroup`. The original is ``__cause__`` (and ``original``).
    ``KeyboardInterrupt``, ``SystemExit`` and real cancellations are never wrapped.
    """

    def __init__(self, original: BaseException) -> None:
        super().__init__(
            f"the listener raised {original!r}, a BaseException that is neither an Exception "
            "nor a cancellation of its caller; it counts as the listener's failure"
        )
        self.original = original
        self.__cause__ = original


class EventListener:
    """Base class for listener classes.

    Implement ``async def handle(self, event)`` (or a plain ``def``, which runs in a worker
    thread). A fresh instance handles each event, so ``__init__`` takes no arguments.
    Class attributes set the policy for queued dispatch:

    - ``tries``: attempts in all (default 1, no retry);
    - ``backoff``: seconds before a retry, a number or one per retry (default 0);
    - ``timeout``: seconds per attempt, ``None`` for no limit (applies in ``dispatch_now`` too;
      a plain ``def handle`` is abandoned at the deadline, as its thread cannot be killed).

    ``async def failed(self, event, exc)`` is called once after the last failed attempt,
    bounded by ``timeout`` (else the bus's ``hook_timeout``).
    """

    tries: ClassVar[int] = 1
    backoff: ClassVar[float | Sequence[float]] = 0
    timeout: ClassVar[float | None] = None

    handle: ClassVar[Callable[..., Any]]

    async def failed(self, event: Any, exc: BaseException) -> None:
        """Called after the last attempt failed. Override for cleanup or user notices."""


class Policy:
    """How a queued job of one listener is attempted. Immutable; validated on creation."""

    __slots__ = ("backoff", "timeout", "tries")

    def __init__(
        self,
        tries: int = 1,
        backoff: float | Sequence[float] = 0,
        timeout: float | None = None,
        *,
        owner: str = "listener",
    ) -> None:
        check_count(tries, f"{owner}: tries", error=RegistrationError)
        if isinstance(backoff, int | float) and not isinstance(backoff, bool):
            delays: tuple[float, ...] = (float(backoff),)
        elif isinstance(backoff, Sequence) and not isinstance(backoff, str) and backoff:
            delays = tuple(backoff)
        else:
            raise RegistrationError(
                f"{owner}: backoff must be seconds or a non-empty sequence of seconds, "
                f"got {backoff!r}"
            )
        for delay in delays:
            # NaN would mean "retry now" (or crash the first timer), inf "never": refuse both.
            if isinstance(delay, bool) or not isinstance(delay, int | float):
                raise RegistrationError(
                    f"{owner}: backoff delays must be >= 0 seconds (numbers), got {backoff!r}"
                )
            if not math.isfinite(delay) or delay < 0:
                raise RegistrationError(
                    f"{owner}: backoff delays must be >= 0 seconds and finite, got {backoff!r}; "
                    "set a real delay (e.g. backoff=[1, 5, 30])"
                )
        timeout = check_limit(timeout, f"{owner}: timeout", error=RegistrationError)
        self.tries = tries
        self.backoff: tuple[float, ...] = delays
        self.timeout = timeout

    @classmethod
    def of(
        cls,
        target: Any,
        tries: int | None = None,
        backoff: float | Sequence[float] | None = None,
        timeout: float | None = None,
    ) -> Policy:
        """The policy given here, else the target's class attributes, else the defaults."""

        def pick(given: Any, attr: str, default: Any) -> Any:
            return given if given is not None else getattr(target, attr, default)

        return cls(
            pick(tries, "tries", 1),
            pick(backoff, "backoff", 0),
            pick(timeout, "timeout", None),
            owner=qualified_name(target),
        )

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed ``attempt`` (1-based) before the next one."""
        return float(self.backoff[min(attempt, len(self.backoff)) - 1])

    def as_dict(self) -> dict[str, Any]:
        backoff: float | list[float] = (
            self.backoff[0] if len(self.backoff) == 1 else list(self.backoff)
        )
        return {"tries": self.tries, "backoff": backoff, "timeout": self.timeout}

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.as_dict().items())
        return f"Policy({fields})"


class Listener:
    """One registered listener: the user's class or function, its name and its policy."""

    __slots__ = (
        "__weakref__",
        "_failed",
        "is_async",
        "make",
        "make_in_context",
        "name",
        "policy",
        "target",
    )

    target: Any
    name: str
    policy: Policy
    is_async: bool
    #: ``make(event)`` returns the awaitable for one attempt; the hot path calls only this.
    make: Callable[[Event], Awaitable[Any]]
    #: False when ``make`` runs no user code (an ``async def``, a class without its own
    #: ``__init__``/``__new__``), so it need not be called inside the listener's context.
    make_in_context: bool

    def __init__(self, target: Any, policy: Policy | None = None) -> None:
        self.target = target
        self.name = qualified_name(target)
        if isinstance(target, type):
            handle = _class_handle(target)
            _check_takes_event(handle, f"{self.name}.handle", method=True)
            _check_no_init_args(target)
            self.policy = policy or Policy.of(target)
            self.is_async = inspect.iscoroutinefunction(handle)
            if self.is_async:
                self.make = _async_method_maker(target)
            else:
                self.make = functools.partial(_run_sync_method, self, target)
            self.make_in_context = not (self.is_async and _runs_no_code_to_create(target))
            failed = getattr(target, "failed", None)
            self._failed = failed if callable(failed) else None
        elif inspect.isfunction(target) or inspect.ismethod(target) or _is_callable_object(target):
            _check_takes_event(
                target if inspect.isroutine(target) else target.__call__, self.name, method=False
            )
            self.policy = policy or Policy.of(target)
            self.is_async = inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(
                getattr(target, "__call__", None)  # noqa: B004 - async __call__ objects
            )
            self.make = target if self.is_async else functools.partial(_run_sync, self, target)
            self.make_in_context = not (
                inspect.iscoroutinefunction(target)
                and (inspect.isfunction(target) or inspect.ismethod(target))
            )
            self._failed = None
        else:
            raise RegistrationError(
                f"{target!r} is neither a listener class nor a function; pass a class with "
                "a handle(self, event) method or an (async) function taking the event"
            )

    def failed_hook(self) -> Callable[[Event, BaseException], Any] | None:
        """The class's ``failed`` hook bound to a fresh instance, or ``None`` without one."""
        if self._failed is None:
            return None
        return self.target().failed  # type: ignore[no-any-return]

    @property
    def handler(self) -> Callable[..., Any]:
        """The function whose first event parameter's annotation names the event types."""
        if isinstance(self.target, type):
            return _class_handle(self.target)
        return self.target  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"<Listener {self.name} {self.policy!r}>"


def qualified_name(obj: Any) -> str:
    module = getattr(obj, "__module__", None) or "?"
    qualname = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    return f"{module}.{qualname}"


def _is_callable_object(obj: Any) -> bool:
    return not isinstance(obj, type) and callable(obj) and not inspect.isbuiltin(obj)


def _class_handle(cls: type) -> Callable[..., Any]:
    handle = inspect.getattr_static(cls, "handle", None)
    if handle is None or not callable(getattr(cls, "handle", None)):
        raise RegistrationError(
            f"listener class {qualified_name(cls)} has no handle method; "
            "define `async def handle(self, event) -> None`"
        )
    if isinstance(handle, staticmethod | classmethod):
        raise RegistrationError(
            f"{qualified_name(cls)}.handle must be a plain method `def handle(self, event)`"
        )
    return handle  # type: ignore[no-any-return]


_POSITIONAL = (
    inspect.Parameter.POSITIONAL_ONLY,
    inspect.Parameter.POSITIONAL_OR_KEYWORD,
    inspect.Parameter.VAR_POSITIONAL,
)


def _check_takes_event(fn: Any, name: str, *, method: bool) -> None:
    """Refuse what would fail (or silently do nothing) on every job: check it once, here."""
    example = (
        "async def handle(self, event: SomeEvent)"
        if method
        else ("async def on_some_event(event: SomeEvent)")
    )
    if inspect.isasyncgenfunction(fn) or inspect.isgeneratorfunction(fn):
        kind = "an async generator" if inspect.isasyncgenfunction(fn) else "a generator"
        raise RegistrationError(
            f"{name} is {kind} function (it contains `yield`), so calling it would only "
            f"create a generator and never run its body; write `{example}` without `yield`"
        )
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # some builtins and C callables have none: let them be
        return
    probe = (None, None) if method else (None,)
    try:
        sig.bind(*probe)
    except TypeError:
        positional = [p for p in sig.parameters.values() if p.kind in _POSITIONAL]
        if len(positional) <= len(probe) - 1:
            raise RegistrationError(
                f"{name}: the handler takes no event parameter, so it cannot be called with "
                "the event; "
                f"give it one: `{example}`"
            ) from None
        raise RegistrationError(
            f"{name}{sig} cannot be called with one event: the listener is called as "
            f"{'handle(event)' if method else 'listener(event)'}; give the other "
            "parameters defaults or remove them"
        ) from None


def _check_no_init_args(cls: type) -> None:
    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError):  # pragma: no cover - builtins without signatures
        return
    required = [
        p.name
        for p in sig.parameters.values()
        if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if required:
        raise RegistrationError(
            f"listener class {qualified_name(cls)} needs arguments {required} to be created; "
            "a fresh instance handles each event, so __init__ must take no arguments "
            "(read settings or services inside handle instead)"
        )


def _runs_no_code_to_create(cls: type) -> bool:
    """True when ``cls()`` runs no user code (no metaclass, ``__init__`` or ``__new__``)."""
    init: object = cls.__init__  # type: ignore[misc]
    new: object = cls.__new__
    return type(cls) is type and init is object.__init__ and new is object.__new__


def _async_method_maker(cls: type) -> Callable[[Event], Awaitable[Any]]:
    # Bound to the class once: per event this is one instance and one call.
    def make(event: Event) -> Awaitable[Any]:
        return cls().handle(event)  # type: ignore[no-any-return]

    return make


async def _run_sync(listener: Listener, fn: Callable[[Event], Any], event: Event) -> Any:
    """One attempt of a plain ``def`` listener in a worker thread, under its timeout.

    The timeout is applied here rather than around the attempt, so that its clock starts
    when a thread is free: a job never times out waiting for a thread. A thread cannot be
    killed: when the timeout passes (or the farm stops waiting) the attempt ends, and the
    thread is abandoned and reported when it returns.
    """
    run = ThreadRun(None, event.event_name, listener.name)
    # A copy of the (already per-listener) context, because a Context can only be entered
    # by one thread at a time and the calling task may still be inside ours.
    timeout = listener.policy.timeout
    result = await run_in_thread(run, timeout, copy_context().run, fn, event)
    if result is EXPIRED:
        raise ThreadTimeout(
            f"{listener.name} did not return within its timeout of {timeout}s handling "
            f"{event.event_name!r}; it runs in a thread, which cannot be killed, so the thread "
            "goes on in the background (a WARNING is logged when it returns)",
            run,
        )
    return result


async def _run_sync_method(listener: Listener, cls: type, event: Event) -> Any:
    return await _run_sync(listener, cls().handle, event)


# --- worker threads: capacity, timeouts, abandoned threads ------------------------------

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


class ThreadTimeout(TimeoutError):
    """A thread listener's timeout passed; its thread could not be killed and goes on."""

    def __init__(self, message: str, run: ThreadRun) -> None:
        super().__init__(message)
        self.run = run


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


# --- running one attempt inside a context -----------------------------------------------


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
        failure = _listener_failure(exc)
        if failure is None:
            raise
        return failure
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
        failure = _listener_failure(exc)
        if failure is None:
            raise
        return failure
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
        failure = _listener_failure(exc)
        if failure is None:
            raise
        return failure
    return None


# --- which event types does a listener's annotation name? ------------------------------


class UnresolvedAnnotation(RegistrationError):
    """The annotation names something not importable yet; resolve it when first needed."""


def listener_event_types(listener: Any, *, may_import: bool = True) -> tuple[type, ...]:
    """Resolve the event types named by the annotation of the handler's event parameter.

    String annotations (``from __future__ import annotations``, or a name imported only under
    ``TYPE_CHECKING``) are evaluated against the handler's module globals, then the module's
    ``if TYPE_CHECKING:`` imports (imported now only with ``may_import``, since at
    registration time that import may be circular), then the known :class:`Event` subclasses
    by class name. A union names several types.
    """
    handler = listener.handler if isinstance(listener, Listener) else _handler_of(listener)
    name = qualified_name(listener.target if isinstance(listener, Listener) else listener)
    params = list(inspect.signature(handler).parameters.values())
    if (isinstance(listener, Listener) and isinstance(listener.target, type)) or (
        not isinstance(listener, Listener) and isinstance(listener, type)
    ):
        params = params[1:]  # self
    if not params:
        raise RegistrationError(
            f"{name}: the handler takes no event parameter; give it one "
            "(`async def handle(self, event: NewChatEvent)`) or name the events: "
            "@listen(NewChatEvent)"
        )
    annotation = params[0].annotation
    if annotation is inspect.Parameter.empty:
        raise RegistrationError(
            f"{name}: cannot infer the event type, the event parameter has no annotation; "
            "annotate it (`event: NewChatEvent`) or name the events: @listen(NewChatEvent)"
        )
    resolved = _resolve(annotation, handler, name, may_import)
    members = typing.get_args(resolved) if _is_union(resolved) else (resolved,)
    for member in members:
        if not (isinstance(member, type) and issubclass(member, Event)):
            raise RegistrationError(
                f"{name}: the event parameter's annotation {annotation!r} names {member!r}, "
                "which is not an Event subclass"
            )
    return tuple(members)


def _handler_of(target: Any) -> Callable[..., Any]:
    return _class_handle(target) if isinstance(target, type) else target


def _is_union(tp: Any) -> bool:
    return isinstance(tp, UnionType) or typing.get_origin(tp) is typing.Union


class _FallbackNames(dict[str, Any]):
    """Module globals, then its TYPE_CHECKING imports, then Event subclasses by class name."""

    def __init__(
        self,
        module_globals: dict[str, Any],
        module: ModuleType | None,
        owner: str,
        may_import: bool,
    ) -> None:
        super().__init__(module_globals)
        self.module = module
        self.owner = owner
        self.may_import = may_import
        self._specs: dict[str, tuple[str, str | None]] | None = None

    def __missing__(self, key: str) -> Any:
        if hasattr(builtins, key):
            return getattr(builtins, key)
        if self._specs is None:
            self._specs = _type_checking_imports(self.module) if self.module else {}
        spec = self._specs.get(key)
        if spec is not None:
            return self._import(key, *spec)
        found = {c for c in _all_event_classes() if c.__name__ == key}
        if len(found) == 1:
            return found.pop()
        if not found:
            raise UnresolvedAnnotation(
                f"{self.owner}: the annotation names {key!r}, which is neither importable from "
                "the listener's module nor a known Event subclass; import the event module "
                "before dispatching, or name the events explicitly: @listen(EventType)"
            )
        options = ", ".join(sorted(qualified_name(c) for c in found))
        raise RegistrationError(
            f"{self.owner}: the annotation names {key!r}, which is ambiguous ({options}); "
            "name the event explicitly: @listen(EventType)"
        )

    def _import(self, key: str, module_name: str, attr: str | None) -> Any:
        if not self.may_import and module_name not in sys.modules:
            raise UnresolvedAnnotation(
                f"{self.owner}: {key!r} comes from a TYPE_CHECKING import of {module_name!r}, "
                "which is not imported yet"
            )
        try:
            imported = importlib.import_module(module_name)
            return imported if attr is None else getattr(imported, attr)
        except (ImportError, AttributeError) as exc:
            raise RegistrationError(
                f"{self.owner}: the annotation names {key!r}, imported under TYPE_CHECKING "
                f"from {module_name!r}, but importing it failed: {exc}"
            ) from exc


def _type_checking_imports(module: ModuleType) -> dict[str, tuple[str, str | None]]:
    """``{bound name: (module, attribute or None)}`` for a module's TYPE_CHECKING imports."""
    try:
        tree = ast.parse(inspect.getsource(module))
    except (OSError, TypeError, SyntaxError):
        return {}
    specs: dict[str, tuple[str, str | None]] = {}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.If) and _is_type_checking(node.test)):
            continue
        for stmt in node.body:
            if isinstance(stmt, ast.ImportFrom):
                base = "." * stmt.level + (stmt.module or "")
                source = importlib.util.resolve_name(base, module.__package__ or "")
                for alias in stmt.names:
                    specs[alias.asname or alias.name] = (source, alias.name)
            elif isinstance(stmt, ast.Import):
                for alias in stmt.names:
                    if alias.asname:
                        specs[alias.asname] = (alias.name, None)
                    else:
                        top = alias.name.partition(".")[0]
                        specs[top] = (top, None)
    return specs


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _all_event_classes() -> Iterable[type[Event]]:
    stack: list[type[Event]] = [Event]
    while stack:
        cls = stack.pop()
        yield cls
        stack.extend(cls.__subclasses__())


def _resolve(annotation: Any, handler: Callable[..., Any], owner: str, may_import: bool) -> Any:
    if not isinstance(annotation, str):
        return annotation
    func = inspect.unwrap(handler)
    module = sys.modules.get(getattr(func, "__module__", ""), None)
    module_globals = dict(vars(module)) if module is not None else {}
    module_globals.update(getattr(func, "__globals__", {}))
    namespace = _FallbackNames(module_globals, module, owner, may_import)
    try:
        # `event: "NewChatEvent"` under `from __future__ import annotations` is a string of
        # a string; unquote as often as needed (a few times at most in real code).
        resolved: Any = annotation
        for _ in range(3):
            if not isinstance(resolved, str):
                break
            resolved = eval(resolved, {"__builtins__": {}}, namespace)
        return resolved
    except RegistrationError:
        raise
    except Exception as exc:
        raise RegistrationError(
            f"{owner}: cannot evaluate the event annotation {annotation!r}: {exc}"
        ) from exc
