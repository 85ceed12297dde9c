"""The broker-neutral job runner: every wire driver builds and runs jobs through this module.

A wire driver (RabbitMQ, the in-memory ``memory`` driver, a future Redis or database one)
only moves bytes. What the bytes mean lives here, once:

- :class:`WireNames` — registration checks: a worker finds listeners by ``module.qualname``
  and event classes by ``event_name`` in its *own* registrations, so a listener defined
  inside a function (``<locals>``), two listeners with one name and two event classes with
  one ``event_name`` are refused when they are registered;
- :func:`build` — one dispatch's message bodies: event id, job ids, attempt 1, the context
  snapshot, the event's JSON round-trip check and the size limit;
- :class:`Runner` — "run one job from a message body": decode (one parse), resolve names
  against the worker's bus, install the context, set ``current_job()``, run the attempt with
  the listener's timeout, and answer :class:`Done`, :class:`Retry` (delay, next body) or
  :class:`Dead` (reason, headers). ``bus.attempt_failed`` makes the retry-or-fail decision.

This module imports no broker client; its messages name no broker.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Mapping
from contextvars import Context, copy_context
from typing import TYPE_CHECKING, Any

import anyio
from pydantic import BaseModel, ConfigDict, create_model

from .. import _event
from .. import context as _context
from .._attempt import clear_self_cancel, run_attempt
from .._errors import EventTooLarge, JobKilledWorker, ListenerBaseException, RegistrationError
from .._event import Event
from .._job import Job, set_current_job
from .._log import NO_JOB, job_record, logger, record
from .._names import qualified_name
from . import _wire

if TYPE_CHECKING:
    from .._listener import Listener
    from .base import Bus

__all__ = [
    "ATTEMPTS_HEADER",
    "ERROR_HEADER",
    "ERROR_TYPE_HEADER",
    "REASON_HEADER",
    "Dead",
    "Done",
    "Names",
    "Retry",
    "Runner",
    "WireNames",
    "build",
]

#: Headers a dead job carries, with its reason and what its listener raised.
REASON_HEADER = "x-eventbus-reason"
ERROR_TYPE_HEADER = "x-eventbus-error-type"
ERROR_HEADER = "x-eventbus-error"
ATTEMPTS_HEADER = "x-eventbus-attempts"
#: Reasons and error texts in headers are cut to this many characters.
MAX_REASON = 1000
#: Distinct unknown context key names a worker warns about (then it stops remembering them).
_MAX_REPORTED_KEYS = 64


# -- registration -------------------------------------------------------------------------


class WireNames:
    """What a driver whose jobs travel by name must refuse when it is registered."""

    __slots__ = ("driver", "events", "listeners")

    def __init__(self, driver: str) -> None:
        self.driver = driver
        self.events: dict[str, type] = {}
        self.listeners: dict[str, Listener] = {}

    def check_listener(self, listener: Listener, bus: Bus) -> None:
        name = listener.name
        if "<locals>" in name:
            raise RegistrationError(
                f"{name} is defined inside a function (<locals>): a {self.driver} worker finds "
                "listeners by module.qualname in its own registrations, and could never find "
                "this one (nor a closure's variables). Define it at module level; pass what it "
                "needs in the event or in eventbus.context"
            )
        other = self.listeners.get(name)
        if other is not None and other is not listener:
            raise RegistrationError(
                f"two listeners are named {name!r} on {bus!r}; the {self.driver} driver finds "
                "listeners by module.qualname, so give one of them another name"
            )
        self.listeners[name] = listener

    def claim_event(self, cls: type[Event], bus: Bus, doing: str) -> None:
        other = self.events.get(cls.event_name)
        if other is not None and other is not cls:
            raise RegistrationError(
                f"{qualified_name(cls)} and {qualified_name(other)} share the event_name "
                f"{cls.event_name!r} on {bus!r} (found while {doing}); the {self.driver} "
                "driver finds event classes by name, so set a distinct "
                "`event_name = '...'` on one of them"
            )
        self.events[cls.event_name] = cls

    def check(self, listener: Listener, key: type, bus: Bus) -> None:
        """``Driver.check_registration`` for a wire driver."""
        if isinstance(key, type) and issubclass(key, Event):
            self.claim_event(key, bus, "registering")
        self.check_listener(listener, bus)


# -- the producer side: one dispatch -> its message bodies --------------------------------

_snapshot = _context.snapshot


def build(
    event: Event,
    listeners: tuple[Listener, ...],
    context: Context,
    max_size: int,
    hint: str = "",
) -> list[tuple[str, bytes]]:
    """``(job id, body)`` per listener; raises before anything is sent when one cannot go.

    :class:`~eventbus.EventNotSerializable` for an event or context value with no JSON form,
    :class:`~eventbus.EventTooLarge` for a body over ``max_size`` bytes (``hint`` says how to
    raise the limit).
    """
    data = _wire.event_json(event)
    snapshot = context.run(_snapshot)
    event_uuid = _wire.new_event_id()  # 16 random bytes of a uuid4, no UUID object
    event_id = event_uuid.hex()
    now = time.time()
    name = event.event_name
    jobs: list[tuple[str, bytes]] = []
    for listener in listeners:
        job = _wire.job_id(event_uuid, listener.name)
        body = _wire.encode(
            job=job,
            event_id=event_id,
            event_name=name,
            listener=listener.name,
            attempt=1,
            dispatched_at=now,
            context=snapshot,
            data=data,
        )
        if len(body) > max_size:
            raise EventTooLarge(
                f"cannot queue {type(event).__qualname__} ({name!r}): its message is "
                f"{len(body)} bytes, over max_message_size={max_size}; send a reference "
                f"(an id or URL) instead of the payload, or raise the limit{hint}"
            )
        jobs.append((job, body))
    return jobs


# -- the worker side: names -> code -------------------------------------------------------


class _Unknown:
    pass


_UNKNOWN: Any = _Unknown()


class Names:
    """Event classes and listeners of the worker's own bus, by the names messages carry."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.listeners: dict[str, Listener] = {}
        self.events: dict[str, type[Event] | None] = {}
        self._seen: tuple[int, int, int, int] = (-1, -1, -1, -1)

    def _signature(self) -> tuple[int, int, int, int]:
        """Moves whenever an event class is created or the bus registers something."""
        return (_event.classes_created, *self.bus.registration_mark())

    def load(self) -> None:
        bus = self.bus
        self._seen = self._signature()
        self.listeners = {listener.name: listener for listener in bus.listeners()}
        events: dict[str, type[Event] | None] = {}
        keys = bus.registered_types()
        roots = [k for k in keys if issubclass(k, Event)]
        mixins = tuple(k for k in keys if not issubclass(k, Event))
        seen: set[type] = set()
        stack: list[type] = [*roots]
        if mixins:
            stack.append(Event)
        while stack:
            cls = stack.pop()
            if cls in seen:
                continue
            seen.add(cls)
            stack.extend(cls.__subclasses__())
            if not issubclass(cls, Event) or not bus.routes_for(cls):
                continue
            other = events.get(cls.event_name, cls)
            events[cls.event_name] = cls if other is cls else None  # None: ambiguous
        self.events = events

    def event_class(self, name: str) -> type[Event] | None:
        """The one class of that name with listeners, or None (unknown or ambiguous)."""
        cls = self.events.get(name, _UNKNOWN)
        if cls is _UNKNOWN and self._signature() != self._seen:
            self.load()
            cls = self.events.get(name)
        return None if cls is _UNKNOWN else cls

    def resolve(self, event_name: str, listener_name: str) -> tuple[type[Event], Listener]:
        cls = self.events.get(event_name, _UNKNOWN)
        if cls is _UNKNOWN and self._signature() != self._seen:
            # An event class was created (or something registered) since the last scan: look
            # again. Otherwise a rescan could not find more, and would cost a full walk of
            # the event classes for every message naming an unknown event.
            self.load()
            cls = self.events.get(event_name, _UNKNOWN)
        if cls is _UNKNOWN:
            raise _wire.PoisonMessage(
                f"unknown event {_wire._short(event_name)}: no event class of that "
                "name has listeners in this worker's provider"
            )
        if cls is None:
            raise _wire.PoisonMessage(
                f"ambiguous event {event_name!r}: several event classes of this "
                "worker share that name"
            )
        listener = self.listeners.get(listener_name)
        if listener is None and self._signature() != self._seen:
            self.load()
            listener = self.listeners.get(listener_name)
        if listener is None:
            raise _wire.PoisonMessage(
                f"unknown listener {_wire._short(listener_name)}: not registered in this "
                "worker's provider"
            )
        if listener not in self.bus.lookup(cls):
            raise _wire.PoisonMessage(
                f"listener {listener_name!r} does not listen to {event_name!r} "
                "in this worker's provider"
            )
        return cls, listener


# -- decoding: one parse of the body ------------------------------------------------------

_HEAD_FIELDS = ("v", "job", "event_id", "event", "listener", "attempt", "at", "context")
_models: dict[type, type[BaseModel]] = {}
_EVENT_KEY = b'"event":"'


def _model(cls: type[Event]) -> type[BaseModel]:
    """The whole envelope with ``data`` typed as ``cls``: head and event in one JSON parse."""
    model = _models.get(cls)
    if model is None:
        fields: dict[str, Any] = {name: (Any, None) for name in _HEAD_FIELDS}
        model = create_model(
            f"{cls.__name__}Job",
            __config__=ConfigDict(extra="ignore"),
            data=(cls, ...),
            **fields,
        )
        _models[cls] = model
    return model


def _head_ok(head: Any) -> bool:
    """The checks of ``_wire.decode_head``, on the parsed attributes (cheap, no parse)."""
    job, attempt, at = head.job, head.attempt, head.at
    return (
        head.v == _wire.FORMAT_VERSION
        and type(job) is str
        and type(head.event_id) is str
        and type(head.listener) is str
        and type(attempt) is int
        and attempt >= 1
        and type(at) in (int, float)
        and type(head.context) is dict
        and len(job) <= 63  # ASCII-sized; longer ids take the checked path
        and _finite(at)
    )


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _envelope(head: Any) -> _wire.Envelope:
    envelope = _wire.Envelope.__new__(_wire.Envelope)
    envelope.job_id = head.job
    envelope.event_id = head.event_id
    envelope.event_name = head.event
    envelope.listener = head.listener
    envelope.attempt = head.attempt
    envelope.dispatched_at = head.at
    envelope.context = head.context
    envelope.event = head.data
    return envelope


def decode(names: Names, body: bytes) -> tuple[_wire.Envelope, type[Event], Listener]:
    """The envelope (its ``event`` decoded), its event class and listener; or PoisonMessage.

    The body is parsed once, by the event class's model of the whole envelope; the class is
    found from the name the encoder writes first. Anything unusual (another layout, escapes,
    NaN, a validation error) takes the checked path of :mod:`._wire`, which gives the reason.
    """
    start = body.find(_EVENT_KEY)
    if start >= 0 and b"NaN" not in body and b"Infinity" not in body:
        start += len(_EVENT_KEY)
        end = body.find(b'"', start)
        raw = body[start:end]
        if end > 0 and b"\\" not in raw:
            try:
                name = raw.decode()
            except UnicodeDecodeError:
                name = ""
            cls = names.event_class(name) if name else None
            if cls is not None:
                head: Any
                try:
                    head = _model(cls).model_validate_json(body)
                except Exception:
                    head = None
                if head is not None and head.event == name and _head_ok(head):
                    envelope = _envelope(head)
                    return envelope, cls, _listener(names, envelope)
    envelope, _ = _wire.decode_head(body)
    cls = _resolved_class(names, envelope)
    envelope.event = _wire.decode_event(cls, body)
    return envelope, cls, _listener(names, envelope)


class Unrunnable(_wire.PoisonMessage):
    """A message that decoded but names nothing this worker can run: its envelope is known."""

    def __init__(self, reason: str, envelope: _wire.Envelope) -> None:
        super().__init__(reason)
        self.envelope = envelope


def _resolved_class(names: Names, envelope: _wire.Envelope) -> type[Event]:
    try:
        return names.resolve(envelope.event_name, envelope.listener)[0]
    except _wire.PoisonMessage as exc:
        raise Unrunnable(exc.reason, envelope) from None


def _listener(names: Names, envelope: _wire.Envelope) -> Listener:
    try:
        return names.resolve(envelope.event_name, envelope.listener)[1]
    except _wire.PoisonMessage as exc:
        raise Unrunnable(exc.reason, envelope) from None


# -- results ------------------------------------------------------------------------------


class Done:
    """The job ran: settle (ack) its message."""

    __slots__ = ("envelope", "listener")

    def __init__(self, envelope: _wire.Envelope, listener: Listener) -> None:
        self.envelope = envelope
        self.listener = listener


class Retry:
    """Queue ``body`` (the next attempt) to run after ``delay`` seconds, then settle."""

    __slots__ = ("body", "delay", "envelope", "extra")

    def __init__(
        self, delay: float, body: bytes, envelope: _wire.Envelope, extra: dict[str, Any]
    ) -> None:
        self.delay = delay
        self.body = body
        self.envelope = envelope
        self.extra = extra


class Dead:
    """Never run this body again: keep it aside (dead-letter) with ``reason`` and ``headers``.

    ``failed`` is True when the listener's last attempt failed (already reported through
    ``bus.attempt_failed``), False for a body no worker can run (poison).
    """

    __slots__ = ("extra", "failed", "headers", "job", "reason")

    def __init__(
        self,
        reason: str,
        headers: dict[str, Any],
        job: str,
        extra: Mapping[str, Any],
        *,
        failed: bool = False,
    ) -> None:
        self.reason = reason[:MAX_REASON]
        self.headers = headers
        self.headers[REASON_HEADER] = self.reason
        self.job = job
        self.extra = extra
        self.failed = failed


Result = Done | Retry | Dead
Contain = Callable[[Awaitable[Any]], Awaitable[Any]]


async def contain(awaitable: Awaitable[Any]) -> Any:
    """Await ``awaitable``; return its result, or the BaseException a listener let escape.

    Only a real cancellation (an enclosing cancel scope), ``KeyboardInterrupt`` and
    ``SystemExit`` propagate; a listener that cancelled its own task has failed.
    """
    try:
        return await awaitable
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        if anyio.current_effective_deadline() == -math.inf:
            raise
        clear_self_cancel()
        return exc if isinstance(exc, Exception) else ListenerBaseException(exc)


def _record(envelope: _wire.Envelope) -> dict[str, Any]:
    return record(envelope.event_name, envelope.listener, envelope.attempt)


class Runner:
    """Run jobs from message bodies against ``bus``'s own registrations."""

    def __init__(
        self,
        bus: Bus,
        *,
        max_message_size: int,
        max_delay: float = math.inf,
        contain: Contain = contain,
        verbose: bool = False,
    ) -> None:
        self.bus = bus
        self.names = Names(bus)
        self.max_message_size = max_message_size
        self.max_delay = max_delay
        self.contain = contain
        self.verbose = verbose
        self._unknown_keys: set[str] = set()

    def _poison(self, reason: str, job: str, envelope: _wire.Envelope | None) -> Dead:
        return Dead(reason, {}, job, NO_JOB if envelope is None else _record(envelope))

    def _job_context(self, envelope: _wire.Envelope, redelivered: bool) -> Context:
        ctx = copy_context()
        if envelope.context:
            ignored = ctx.run(_context.install, envelope.context)
            if ignored:
                self._unknown_context(ignored, envelope)
        job = Job(
            envelope.job_id,
            envelope.event_id,
            envelope.event_name,
            envelope.listener,
            envelope.attempt,
            dispatched_at=envelope.dispatched_at,
            redelivered=redelivered,
        )
        set_current_job(ctx, job)
        return ctx

    async def run(self, body: bytes, *, redelivered: bool = False, job: str = "") -> Result:
        """Run the job ``body`` carries once; ``job`` names the message in logs if it is poison."""
        try:
            if len(body) > self.max_message_size:
                raise _wire.PoisonMessage(
                    f"message of {len(body)} bytes is over max_message_size="
                    f"{self.max_message_size}: not run"
                )
            envelope, _, listener = decode(self.names, body)
        except _wire.PoisonMessage as exc:
            return self._poison(exc.reason, job, getattr(exc, "envelope", None))
        event = envelope.event
        assert event is not None
        ctx = self._job_context(envelope, redelivered)
        stats = self.bus.stats
        started = time.perf_counter() if self.verbose else 0.0
        stats.running += 1
        try:
            error = await self.contain(run_attempt(listener, event, ctx))
        finally:
            stats.running -= 1
        if error is None:
            stats.succeeded += 1
            if self.verbose:
                logger.info(
                    "ran %s for %s (job %s, attempt %d) in %.1f ms",
                    listener.name,
                    event.event_name,
                    envelope.job_id,
                    envelope.attempt,
                    (time.perf_counter() - started) * 1000,
                    extra=job_record(event, listener, envelope.attempt),
                )
            return Done(envelope, listener)
        return await self._failed(envelope, event, listener, error, ctx)

    async def _failed(
        self,
        envelope: _wire.Envelope,
        event: Event,
        listener: Listener,
        error: BaseException,
        ctx: Context,
    ) -> Result:
        attempt = envelope.attempt
        extra = job_record(event, listener, attempt)
        reason = "failed"
        body = b""
        last = attempt >= listener.policy.tries
        if not last:
            try:
                delay = listener.policy.delay(attempt)
                if not 0 <= delay <= self.max_delay:  # also false for NaN
                    raise ValueError(
                        f"the backoff of {listener.name} after attempt {attempt} is {delay!r}s;"
                        f" a retry delay must be a finite number of seconds from 0 to "
                        f"{self.max_delay:.0f}"
                    )
                body = _wire.encode(
                    job=envelope.job_id,
                    event_id=envelope.event_id,
                    event_name=envelope.event_name,
                    listener=envelope.listener,
                    attempt=attempt + 1,
                    dispatched_at=envelope.dispatched_at,
                    context=envelope.context,
                    data=event.model_dump_json().encode(),
                )
            except Exception as exc:
                # No retry can be queued, so this attempt is the last: failed() and the
                # dead jobs, with why, instead of a runner lost to the exception.
                reason = f"failed; no retry possible: {exc}"
                last = True
                logger.error(
                    "%s: cannot retry job %s (%r); this attempt is its last",
                    listener.name,
                    envelope.job_id,
                    exc,
                    extra=extra,
                )
        # In the job's context, so failed() sees the dispatcher's context and current_job().
        decided = await self.contain(
            self.bus.attempt_failed(listener, event, error, attempt, ctx, last=last)
        )
        if isinstance(decided, BaseException):
            logger.error("%s.failed() or on_failure raised %r", listener.name, decided, extra=extra)
            decided = None
        if decided is not None:
            return Retry(decided, body, envelope, extra)
        # The header names what the listener raised, not eventbus's wrapper around it.
        shown = error.original if isinstance(error, ListenerBaseException) else error
        headers: dict[str, Any] = {
            ERROR_TYPE_HEADER: qualified_name(type(shown)),
            ERROR_HEADER: str(shown)[:MAX_REASON],
            ATTEMPTS_HEADER: attempt,
        }
        return Dead(reason, headers, envelope.job_id, extra, failed=True)

    async def crashed(self, body: bytes, count: int, *, job: str = "") -> Dead:
        """A job that killed its worker ``count`` times: report it failed, never run it."""
        try:
            envelope, _, listener = decode(self.names, body)
        except (_wire.PoisonMessage, ValueError, TypeError, RecursionError) as exc:
            reason = exc.reason if isinstance(exc, _wire.PoisonMessage) else repr(exc)
            return self._poison(reason, job, getattr(exc, "envelope", None))
        event = envelope.event
        assert event is not None
        ctx = self._job_context(envelope, True)
        reason = f"crashed its worker {count} times"
        error = JobKilledWorker(
            f"job {envelope.job_id} ({listener.name} for {event.event_name!r}) {reason}: the "
            "worker process died (os._exit, a signal, the OOM killer) while running it alone; "
            "it is not run again"
        )
        extra = job_record(event, listener, envelope.attempt)
        await self.bus.attempt_failed(listener, event, error, envelope.attempt, ctx, last=True)
        headers: dict[str, Any] = {
            ERROR_TYPE_HEADER: qualified_name(JobKilledWorker),
            ERROR_HEADER: str(error)[:MAX_REASON],
            ATTEMPTS_HEADER: envelope.attempt,
        }
        return Dead(reason, headers, envelope.job_id, extra, failed=True)

    def _unknown_context(self, names: list[str], envelope: _wire.Envelope) -> None:
        """Context keys this worker never defined are ignored (never created: memory)."""
        new = [name for name in names if name not in self._unknown_keys]
        if not new or len(self._unknown_keys) >= _MAX_REPORTED_KEYS:
            return
        self._unknown_keys.update(new[: _MAX_REPORTED_KEYS - len(self._unknown_keys)])
        logger.warning(
            "job %s carries eventbus.context key(s) %s that this worker never defined; "
            "ignoring them (define them with define_key in the worker's code to receive them)",
            envelope.job_id,
            ", ".join(_wire._short(name, 60) for name in new[:10]),
            extra=_record(envelope),
        )
