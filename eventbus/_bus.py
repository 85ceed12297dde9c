"""EventBus: registration, dispatch, dispatch_now, lifecycle, defer and stats."""

from __future__ import annotations

import enum
import inspect
import math
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    AsyncExitStack,
    asynccontextmanager,
    contextmanager,
)
from contextvars import Context, copy_context
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from . import drivers
from ._attempt import run_in_context, start_attempt
from ._defer import deferred as _deferred
from ._defer import deferring
from ._errors import RegistrationError, ThreadTimeout
from ._event import Event
from ._intercept import Interception, Interceptor
from ._listener import EventListener, Listener
from ._log import job_record, logger, record
from ._names import qualified_name
from ._policy import Policy
from ._stats import Stats
from ._table import DispatchTable, Route, check_event_key
from ._threads import ThreadRun, call_hook
from .drivers.base import Driver

if TYPE_CHECKING:
    from .testing import EventFake

__all__ = ["EventBus", "Stats"]


T = TypeVar("T")

FailureCallback = Callable[[Event, Listener, BaseException], Awaitable[None] | None]
EventsMapping = Mapping[Any, Iterable[Any]]
LifespanFactory = Callable[[], AbstractAsyncContextManager[Any]]


class _Unset(enum.Enum):
    """``drain_timeout`` not given: ``None`` already means "no limit" there."""

    NOT_GIVEN = "not given"


NOT_GIVEN = _Unset.NOT_GIVEN


class EventBus:
    """Listeners by event type, and the ways to run them.

    ``await bus.dispatch_now(event)`` runs every listener now, one after another, and raises
    an :class:`ExceptionGroup` if any failed. ``await bus.dispatch(event)`` hands one job per
    listener to the driver (the in-process farm by default) and returns without waiting.

    ``driver`` is a registered name (see :mod:`eventbus.drivers`) or a Driver instance.
    ``max_concurrency``, ``max_queue``, ``on_full`` and ``drain_timeout`` go to a driver
    chosen by name that uses them; left out, the driver's own defaults apply.
    """

    def __init__(
        self,
        events: EventsMapping | None = None,
        *,
        driver: Driver | str | None = None,
        max_concurrency: int | None = None,
        max_queue: int | None = None,
        on_full: Literal["wait", "raise"] | None = None,
        drain_timeout: float | _Unset | None = NOT_GIVEN,
        on_failure: FailureCallback | None = None,
        hook_timeout: float = 10.0,
        name: str | None = None,
    ) -> None:
        if (
            isinstance(hook_timeout, bool)
            or not isinstance(hook_timeout, int | float)
            or not math.isfinite(hook_timeout)
            or hook_timeout <= 0
        ):
            raise ValueError(
                f"hook_timeout must be a finite number of seconds > 0, got {hook_timeout!r}; "
                "it bounds failed() and on_failure for listeners without a timeout"
            )
        self.name = name or f"bus-{id(self):x}"
        # Only the options given travel: a driver that does not use one refuses it by name.
        given: dict[str, Any] = {
            key: value
            for key, value in (
                ("max_concurrency", max_concurrency),
                ("max_queue", max_queue),
                ("on_full", on_full),
            )
            if value is not None
        }
        if drain_timeout is not NOT_GIVEN:
            given["drain_timeout"] = drain_timeout
        self.driver = drivers.create(driver, **given)
        if on_failure is not None and not callable(on_failure):
            raise TypeError(
                f"on_failure must be a callable (event, listener, exc), got {on_failure!r}"
            )
        self.driver.bind(self)
        self.on_failure = on_failure
        #: Seconds ``failed()`` and ``on_failure`` may take for a listener without a timeout.
        self.hook_timeout = float(hook_timeout)
        self.stats = Stats()
        self._table = DispatchTable(on_register=self.driver.check_registration)
        self._cache = self._table._cache  # the hot path reads the compiled table directly
        # What dispatch offers each event first (None: nothing intercepts, one check).
        self._intercept: Interceptor | None = None
        self._interceptions: list[Interception] = []  # the open intercept() blocks, in order
        self._stack: AsyncExitStack | None = None
        self._unheard: set[type] = set()  # event types already warned about having no listener
        self._lifespans: list[LifespanFactory] = []
        if events is not None:
            self.register(events)

    def __repr__(self) -> str:
        return f"<EventBus {self.name} driver={self.driver.name}>"

    # -- registration ---------------------------------------------------------------------

    def register(self, events: EventsMapping, *, source: str = "events") -> None:
        """Register a provider mapping ``{EventType: [Listener, ...]}``, all or nothing.

        Every key and listener is checked before any is registered, so a bad entry leaves
        the bus as it was. ``source`` names the mapping in error messages.
        """
        shape = f"{source} must be a dict of event class -> list of listeners"
        if not isinstance(events, Mapping):
            raise RegistrationError(f"{shape}, got {type(events).__name__}: {events!r}")
        checked: list[tuple[type, list[Listener]]] = []
        for key, targets in events.items():
            check_event_key(key)
            if not isinstance(targets, list | tuple):
                raise RegistrationError(
                    f"{shape}: the listeners for {_describe(key)} must be a list, got "
                    f"{targets!r}; write {{{key.__name__}: [{_short(targets)}]}}"
                )
            checked.append((key, [self._table.compile(target) for target in targets]))
        for key, listeners in checked:
            for listener in listeners:
                self._table.add(key, self._table.adopt(listener))

    # An Event class first: otherwise `@bus.listen(NewChatEvent)` would match `(target: T) -> T`.
    @overload
    def listen(
        self,
        event: type[Event],
        /,
        *events: type,
        tries: int | None = None,
        backoff: float | Sequence[float] | None = None,
        timeout: float | None = None,
    ) -> Callable[[T], T]: ...
    @overload
    def listen(self, target: T, /) -> T: ...
    @overload
    def listen(
        self,
        *events: type,
        tries: int | None = None,
        backoff: float | Sequence[float] | None = None,
        timeout: float | None = None,
    ) -> Callable[[T], T]: ...
    def listen(
        self,
        *events: Any,
        tries: int | None = None,
        backoff: float | Sequence[float] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Register a listener class or function; returns it unchanged.

        ``@bus.listen(NewChatEvent)`` or ``@bus.listen(A, B)`` name the events; a bare
        ``@bus.listen`` reads them from the annotation of the handler's event parameter.
        ``tries``, ``backoff`` and ``timeout`` set the policy (functions have no class
        attributes to carry it).
        """
        has_policy = tries is not None or backoff is not None or timeout is not None
        if len(events) == 1 and not has_policy and _looks_like_listener(events[0]):
            target = events[0]
            self._table.add_inferred(self._table.listener(target))
            return target
        for key in events:
            check_event_key(key)

        def decorator(target: T) -> T:
            policy = Policy.of(target, tries, backoff, timeout) if has_policy else None
            listener = self._table.listener(target, policy)
            if events:
                for key in events:
                    self._table.add(key, listener)
            else:
                self._table.add_inferred(listener)
            return target

        return decorator

    def listeners_for(self, event_type: type) -> list[Any]:
        """The listener classes/functions an event of ``event_type`` reaches, in order."""
        return [listener.target for listener in self._table.lookup(event_type)]

    def routes_for(self, event_type: type) -> list[Route]:
        """Like :meth:`listeners_for`, with each compiled listener and the class it hears."""
        return self._table.routes(event_type)

    def registered_types(self) -> list[type]:
        """Every class something is registered on, in registration order."""
        return self._table.keys()

    def listeners(self) -> list[Listener]:
        """Every compiled listener, in registration order."""
        return self._table.all_listeners()

    def lookup(self, event_type: type) -> tuple[Listener, ...]:
        """The compiled listeners an event of ``event_type`` reaches, in order (for drivers)."""
        return self._table.lookup(event_type)

    def registered_on(self, event_type: type) -> set[Listener]:
        """The listeners registered so far on ``event_type``'s MRO, annotations still pending
        left out: safe to call from :meth:`Driver.check_registration`."""
        return self._table.registered_on(event_type)

    def registration_mark(self) -> tuple[int, int, int]:
        """Changes whenever something is registered: a worker caching names rescans then."""
        table = self._table
        return (len(table._listeners), len(table._by_key), len(table._pending))

    # -- dispatching ----------------------------------------------------------------------

    def _listeners_of(self, event: Any) -> tuple[Listener, ...]:
        if not isinstance(event, Event):
            raise TypeError(
                f"dispatch takes an Event instance, got {type(event).__qualname__}: {event!r}"
                + (
                    " (did you pass the class instead of an instance?)"
                    if isinstance(event, type)
                    else ""
                )
            )
        return self._table.lookup(type(event))

    async def dispatch_now(self, event: Event) -> None:
        """Run every listener of ``event`` now, one after another, and wait for them.

        Each listener runs once, in its own copy of the caller's context, with its timeout.
        When any failed, an :class:`ExceptionGroup` of their exceptions is raised after the
        rest have run; each carries a note naming its listener. A listener's BaseException
        (a leaked CancelledError, GeneratorExit) is in it as a ListenerBaseException;
        KeyboardInterrupt, SystemExit and a real cancellation of the caller propagate at once.
        """
        listeners = self._cache.get(type(event))
        if listeners is None:
            listeners = self._listeners_of(event)
        self.stats.dispatched += 1
        if self._intercept is not None and self._intercept(event):
            return
        if not listeners:
            self._no_listeners(event)
            return
        errors: list[Exception] | None = None
        stats = self.stats
        exc: Exception | None
        for listener in listeners:
            ctx = copy_context()
            stats.running += 1
            try:
                outcome = start_attempt(listener, event, ctx)
                exc = (
                    outcome
                    if outcome is None or isinstance(outcome, Exception)
                    else (await outcome)
                )
            finally:
                stats.running -= 1
            if exc is None:
                stats.succeeded += 1
                continue
            await self.attempt_failed(listener, event, exc, 1, ctx, last=True)
            exc.add_note(f"raised by listener {listener.name} handling {event.event_name!r}")
            if errors is None:
                errors = []
            errors.append(exc)
        if errors:
            raise ExceptionGroup(
                f"{len(errors)} of {len(listeners)} listener(s) failed handling "
                f"{event.event_name!r}",
                errors,
            )

    async def dispatch(self, event: Event) -> None:
        """Queue one job per listener of ``event`` on the driver; don't wait for them.

        Listener failures never reach the caller: they are retried per the listener's
        policy, then logged, counted and passed to ``failed()`` and ``on_failure``.
        """
        listeners = self._cache.get(type(event))
        if listeners is None:
            listeners = self._listeners_of(event)
        buffer = _deferred.get()
        if buffer is not None and (buffer := buffer.for_bus(self)) is not None:
            context = copy_context()
            context.run(_deferred.set, None)  # released events dispatch for real
            buffer.items.append((event, context))
            return
        await self._send(event, listeners, copy_context())

    async def _send(self, event: Event, listeners: tuple[Listener, ...], context: Context) -> None:
        """Hand ``event``'s jobs to the driver (``dispatch``, and ``defer`` releasing)."""
        self.stats.dispatched += 1
        if self._intercept is not None and self._intercept(event):
            return  # after defer: an interceptor sees only what a real bus would run
        if not listeners:
            self._no_listeners(event)
            return
        try:
            await self.driver.submit(event, listeners, context)
        except BaseException:
            self.stats.dispatched -= 1  # refused (or cancelled): dispatch raised, not counted
            raise

    def defer(self) -> AbstractAsyncContextManager[None]:
        """Hold every ``dispatch`` in this block (and tasks it starts); release on success.

        On an exception the held events are discarded — dispatch after the transaction or
        request succeeded. Blocks nest: an inner block releases into the outer one.
        """
        return deferring(self)

    def _no_listeners(self, event: Event) -> None:
        """Warn once per event type per bus: a dispatch nothing hears is usually a wiring bug
        (a provider that was not loaded), and silence would hide it."""
        event_type = type(event)
        if event_type in self._unheard:
            return
        self._unheard.add(event_type)
        # "listener": None too, so a formatter using %(listener)s never fails on this record.
        logger.warning(
            "no listeners for %s (%s) on %r; nothing runs for it. Register one, or check that "
            "the provider was loaded (eventbus.load_provider / import eventbus.boot); "
            "this is logged once per event type",
            event.event_name,
            qualified_name(event_type),
            self,
            extra=record(event.event_name),
        )

    # -- what drivers report --------------------------------------------------------------

    async def attempt_failed(
        self,
        listener: Listener,
        event: Event,
        exc: BaseException,
        attempt: int,
        ctx: Context | None = None,
        *,
        last: bool = False,
    ) -> float | None:
        """One attempt failed: the one home of the retry-or-fail decision, for every driver.

        Returns the seconds to wait before attempt ``attempt + 1`` (the retry is logged and
        counted), or ``None`` when this was the last attempt — or ``last`` says no retry is
        possible — and the failure is then already reported: logged, ``stats.failed``,
        ``failed()`` and ``on_failure``, the hooks run inside ``ctx`` when one is given (the
        job's context: ``current_job()`` and the dispatcher's context keys).
        """
        if not last and attempt < listener.policy.tries:
            delay = listener.policy.delay(attempt)
            self.job_retrying(listener, event, exc, attempt, delay)
            return delay
        report = self.job_failed(listener, event, exc, attempt)
        await (report if ctx is None else run_in_context(report, ctx))
        return None

    def job_retrying(
        self, listener: Listener, event: Event, exc: BaseException, attempt: int, delay: float
    ) -> None:
        self.stats.retried += 1
        if isinstance(exc, ThreadTimeout):
            exc.run.attempt = attempt  # for the report when its abandoned thread returns
        logger.warning(
            "%s failed handling %s (attempt %d of %d), retrying in %ss: %r",
            listener.name,
            event.event_name,
            attempt,
            listener.policy.tries,
            delay,
            exc,
            extra=job_record(event, listener, attempt),
        )

    async def job_failed(
        self, listener: Listener, event: Event, exc: BaseException, attempt: int
    ) -> None:
        """The last attempt failed: count, log, then ``failed()`` and ``on_failure``.

        Each hook is bounded by the listener's timeout, or ``hook_timeout`` without one, so
        a hook that never returns cannot hold a worker (or ``join()``) forever.
        """
        self.stats.failed += 1
        if isinstance(exc, ThreadTimeout):
            exc.run.attempt = attempt  # for the report when its abandoned thread returns
        extra = job_record(event, listener, attempt)
        logger.error(
            "%s failed handling %s (attempt %d of %d)",
            listener.name,
            event.event_name,
            attempt,
            listener.policy.tries,
            exc_info=exc,
            extra=extra,
        )
        try:
            hook = listener.failed_hook()
            if hook is not None:
                await self._bounded_hook(
                    f"{listener.name}.failed()", hook, (event, exc), event, listener, attempt
                )
        except Exception:
            logger.exception(
                "%s.failed() raised while handling the failure of %s",
                listener.name,
                event.event_name,
                extra=extra,
            )
        if self.on_failure is not None:
            try:
                await self._bounded_hook(
                    f"on_failure for {listener.name}",
                    self.on_failure,
                    (event, listener, exc),
                    event,
                    listener,
                    attempt,
                )
            except Exception:
                logger.exception(
                    "on_failure raised while reporting %s failing %s",
                    listener.name,
                    event.event_name,
                    extra=extra,
                )

    async def _bounded_hook(
        self,
        what: str,
        hook: Callable[..., Any],
        args: tuple[Any, ...],
        event: Event,
        listener: Listener,
        attempt: int,
    ) -> None:
        timeout = listener.policy.timeout
        source = "the listener's timeout"
        if timeout is None:
            timeout, source = self.hook_timeout, "the bus's hook_timeout"
        run = ThreadRun(what, event.event_name, listener.name, attempt)
        if await call_hook(hook, args, timeout, run):
            return
        logger.error(
            "%s did not return within %ss (%s) after %s failed handling %s; stopped waiting "
            "for it (a plain def hook's thread cannot be killed and goes on in the background)",
            what,
            timeout,
            source,
            listener.name,
            event.event_name,
            extra={**job_record(event, listener, attempt), "hook": what, "timeout": timeout},
        )

    def job_dropped(
        self,
        listener: Listener,
        event: Event,
        state: str,
        attempt: int,
        *,
        reason: str = "the drain deadline passed",
    ) -> None:
        """A job will never finish: count it and log it (``state``: where it was)."""
        self.stats.dropped += 1
        logger.error(
            "dropped %s for %s (%s, attempt %d): %s",
            listener.name,
            event.event_name,
            state,
            attempt,
            reason,
            extra={**job_record(event, listener, attempt), "state": state},
        )

    # -- lifecycle ------------------------------------------------------------------------

    def add_lifespan(self, factory: LifespanFactory) -> LifespanFactory:
        """Open the app's resources (DB, Redis pools) around everything this bus runs.

        ``factory()`` must return an async context manager (an ``@asynccontextmanager``
        function taking no arguments). ``async with bus`` — and so the FastAPI lifespan and
        ``eventbus work`` — enters it before the driver starts, and exits it after the driver
        drained: resources are open before the first job and closed after the last. Several
        are entered in the order added and exited in reverse. A provider module's ``lifespan``
        is added by :func:`eventbus.load_provider`. Returns ``factory`` (usable as decorator).
        """
        _check_lifespan(factory)
        if factory in self._lifespans:
            return factory  # a provider loaded twice opens its resources once
        if self._stack is not None:
            raise RuntimeError(
                f"{self!r} is already running; add lifespans before `async with bus` starts it"
            )
        self._lifespans.append(factory)
        return factory

    async def __aenter__(self) -> EventBus:
        if self._stack is not None:
            raise RuntimeError(f"{self!r} is already running")
        stack = AsyncExitStack()
        try:
            # Resources first, the driver last: the stack exits in reverse, so the driver
            # drains while every resource is still open.
            for factory in self._lifespans:
                await stack.enter_async_context(_open_lifespan(factory))
            await stack.enter_async_context(self.driver.running())
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        stack, self._stack = self._stack, None
        assert stack is not None
        return await stack.__aexit__(exc_type, exc, tb)

    def lifespan(self, app: Any) -> AbstractAsyncContextManager[None]:
        """A Starlette/FastAPI lifespan: ``FastAPI(lifespan=bus.lifespan)``."""
        return self._lifespan()

    @asynccontextmanager
    async def _lifespan(self) -> AsyncIterator[None]:
        async with self:
            yield

    async def join(self) -> None:
        """Wait until every job queued so far has finished (for scripts and tests)."""
        await self.driver.join()

    # -- testing --------------------------------------------------------------------------

    def intercept(self, interceptor: Interceptor) -> AbstractContextManager[None]:
        """Offer every dispatched event to ``interceptor(event)`` first, inside the block.

        ``with bus.intercept(fn):`` -- when ``fn`` returns True, ``dispatch``/``dispatch_now``
        run no listener for that event (``stats.dispatched`` still counts it); False lets it
        through. Blocks nest: the innermost interceptor is asked first, then the ones it
        covers, then the listeners run. Blocks may be left in any order. ``fn`` runs in the
        dispatcher, synchronously, after ``defer()`` released the event (so a discarded event
        is never offered); what it raises reaches the caller of ``dispatch``. Test doubles
        are built on it: :meth:`fake` is one.
        """
        return Interception(self, interceptor)

    def fake(
        self,
        only: Iterable[type] | type | None = None,
        exclude: Iterable[type] | type | None = None,
    ) -> EventFake:
        """Record dispatched events instead of running listeners (see :mod:`eventbus.testing`)."""
        from .testing import EventFake

        return EventFake(self, only=only, exclude=exclude)

    def assert_listening(self, event_type: type, listener: Any) -> None:
        """Assert that ``listener`` receives events of ``event_type`` (the MRO included)."""
        if not isinstance(event_type, type):
            raise TypeError(
                f"assert_listening() takes an event class, got {event_type!r}; "
                f"pass the class: assert_listening({type(event_type).__name__}, ...)"
            )
        reached = self.listeners_for(event_type)
        if listener in reached:
            return
        names = ", ".join(qualified_name(t) for t in reached) or "no listeners"
        raise AssertionError(
            f"{qualified_name(listener)} does not listen to {qualified_name(event_type)}; "
            f"it reaches: {names}"
        )


# What ``isolated`` swaps for a test and puts back: everything a test can change by
# registering, dispatching, intercepting or running. Settings (name, on_failure, ...) stay.
_TEST_STATE = (
    "driver",
    "stats",
    "_table",
    "_cache",
    "_intercept",
    "_interceptions",
    "_stack",
    "_unheard",
    "_lifespans",
)


@contextmanager
def isolated(bus: EventBus, driver: Driver) -> Iterator[EventBus]:
    """``bus`` itself, with its registrations copied, fresh stats, no interceptor, ``driver``.

    For the pytest plugin's ``event_bus`` fixture: the object stays the same, so references
    app modules hold see the test's state; on exit the bus's state is put back as it was.
    It lives here because only the bus knows which of its attributes are state.
    """
    if bus._stack is not None:
        raise RuntimeError(
            f"{bus!r} is running (inside `async with bus` or a lifespan) when the event_bus "
            "fixture started; start it inside the test instead"
        )
    saved: dict[str, Any] = {name: getattr(bus, name) for name in _TEST_STATE}
    driver.bind(bus)
    table = bus._table.copy(on_register=driver.check_registration)
    bus.driver = driver
    bus.stats = Stats()
    bus._table = table
    bus._cache = table._cache
    bus._intercept = None
    bus._interceptions = []
    bus._stack = None
    bus._unheard = set()
    bus._lifespans = list(saved["_lifespans"])  # the app's resources still open with the bus
    try:
        yield bus
    finally:
        for name, value in saved.items():
            setattr(bus, name, value)


def _check_lifespan(factory: Any) -> None:
    name = qualified_name(factory) if callable(factory) else repr(factory)
    if not callable(factory):
        raise RegistrationError(
            f"lifespan {name} is not callable; define it as an @asynccontextmanager function "
            "taking no arguments"
        )
    if inspect.isasyncgenfunction(factory):
        raise RegistrationError(
            f"lifespan {name} is an async generator function; decorate it with "
            "@contextlib.asynccontextmanager"
        )
    try:
        inspect.signature(factory).bind()
    except TypeError:
        raise RegistrationError(
            f"lifespan {name} must take no arguments (the bus calls it as {name}()); "
            "read what it needs from its module or the environment"
        ) from None
    except ValueError:  # no signature to inspect (some builtins): trust it
        pass


@asynccontextmanager
async def _open_lifespan(factory: LifespanFactory) -> AsyncIterator[None]:
    manager = factory()
    if not hasattr(manager, "__aenter__") or not hasattr(manager, "__aexit__"):
        raise TypeError(
            f"lifespan {qualified_name(factory)}() returned {manager!r}, not an async context "
            "manager; decorate it with @contextlib.asynccontextmanager"
        )
    async with manager:
        yield


def _looks_like_listener(obj: Any) -> bool:
    if isinstance(obj, type):  # an EventListener without handle: say so, don't take it as a key
        return not issubclass(obj, Event) and (
            hasattr(obj, "handle") or issubclass(obj, EventListener)
        )
    return callable(obj)


def _describe(key: Any) -> str:
    return qualified_name(key) if isinstance(key, type) else repr(key)


def _short(obj: Any) -> str:
    return getattr(obj, "__name__", None) or repr(obj)
