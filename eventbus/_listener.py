"""Listeners: classes with ``handle`` or plain functions, compiled once into :class:`Listener`.

:class:`Listener` is what the table stores: it knows how to make the awaitable for one
attempt as cheaply as possible (:mod:`eventbus._attempt` runs it), and refuses at
registration what could never take an event.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Sequence
from contextvars import copy_context
from typing import Any, ClassVar

from ._errors import RegistrationError, ThreadTimeout
from ._event import Event
from ._job import _current, current_job
from ._names import qualified_name
from ._policy import Policy
from ._threads import EXPIRED, ThreadRun, run_in_thread

__all__ = ["EventListener", "Listener"]


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
    ctx = copy_context()
    if _current.get() is None and (job := current_job()) is not None:
        ctx.run(_current.set, job)  # the farm registers jobs per task: the thread has none
    result = await run_in_thread(run, timeout, ctx.run, fn, event)
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
