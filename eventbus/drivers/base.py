"""Everything a driver may use: the :class:`Driver` to subclass and the :class:`Bus` it serves.

A driver receives, for each ``dispatch``, the event, the listeners it reaches (already looked
up, in order) and the dispatching caller's context. Lookup, fakes, ``defer``, the failure
path and most stats stay in the bus, so a driver is small:

- :meth:`Driver.submit` accepts one event's jobs. It must not raise for a *listener's*
  failure; it may raise when it cannot accept them (not running, queue full, broker
  unreachable), and then the event is not counted in ``stats.dispatched``.
- :meth:`Driver.running` is entered by ``async with bus`` and owns whatever runs the jobs.
- :meth:`Driver.join` waits for the jobs accepted so far.

Running one job, on any driver::

    set_current_job(ctx, job)              # once per job: what current_job() returns in it
    bus.stats.running += 1
    try:
        exc = await run_attempt(listener, event, ctx)   # never raises a listener's failure
    finally:
        bus.stats.running -= 1
    if exc is None:
        bus.stats.succeeded += 1
    else:
        delay = await bus.attempt_failed(listener, event, exc, attempt, ctx)
        # None: final, already reported. Else run attempt + 1 after `delay` seconds.

A job that will never finish (its worker stopped, a deadline passed) is reported with
:meth:`Bus.job_dropped`. Of :class:`~eventbus.Stats` a driver keeps the gauges ``queued`` (jobs
it holds that wait to run) and ``running``, and the counter ``succeeded``; ``failed``,
``retried`` and ``dropped`` are kept by ``attempt_failed`` and ``job_dropped``, ``dispatched``
by the bus. A driver that runs jobs elsewhere (a broker's workers) resolves names with
:meth:`Bus.listeners`, :meth:`Bus.registered_types` and :meth:`Bus.lookup`.

Bus-level options (:data:`BUS_OPTIONS`: ``EventBus(max_concurrency=..., max_queue=...,
on_full=..., drain_timeout=...)``) reach a driver only if its class lists them in
:attr:`Driver.bus_options`; the registry then passes the ones the caller gave as keyword
arguments to the class. Any other given option is an error naming the option and the
driver, so a setting is never ignored silently.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import Context
from typing import Any, ClassVar, Protocol

from .._attempt import run_attempt, run_in_context, start_attempt
from .._event import Event
from .._job import Job, LocalJob, current_job, set_current_job
from .._listener import Listener
from .._stats import Stats
from .._table import Route

__all__ = [
    "BUS_OPTIONS",
    "Bus",
    "Driver",
    "Event",
    "Job",
    "Listener",
    "LocalJob",
    "Route",
    "Stats",
    "current_job",
    "run_attempt",
    "run_in_context",
    "set_current_job",
    "start_attempt",
]


class Bus(Protocol):
    """What a driver may use of the :class:`~eventbus.EventBus` it serves, and nothing more."""

    #: For logs and error messages (``repr(bus)`` names it too).
    name: str
    #: The driver keeps ``queued``, ``running`` and ``succeeded``; the bus keeps the rest.
    stats: Stats

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
        """Record a failed attempt: the seconds until attempt ``attempt + 1``, or ``None``
        when it was the last (or ``last``) and the failure is already reported (logged,
        counted, ``failed()`` and ``on_failure`` run inside ``ctx``). The one retry-or-fail
        decision: a driver never reads the policy's tries itself."""
        ...

    def job_dropped(
        self,
        listener: Listener,
        event: Event,
        state: str,
        attempt: int,
        *,
        reason: str = ...,
    ) -> None:
        """A job that will never finish: count and log it (``state``: where it was)."""
        ...

    def listeners(self) -> list[Listener]:
        """Every compiled listener (a worker maps ``Listener.name`` back to code with it)."""
        ...

    def registered_types(self) -> list[type]:
        """Every class something is registered on, in registration order."""
        ...

    def routes_for(self, event_type: type) -> list[Route]:
        """The listeners ``event_type`` reaches, each with the class it was registered on."""
        ...

    def lookup(self, event_type: type) -> tuple[Listener, ...]:
        """The compiled listeners an event of ``event_type`` reaches, in order."""
        ...

    def registered_on(self, event_type: type) -> set[Listener]:
        """The listeners registered so far on ``event_type``'s MRO (for check_registration)."""
        ...

    def registration_mark(self) -> tuple[int, int, int]:
        """Changes whenever something is registered: a cache of names is stale then."""
        ...


#: Options ``EventBus(...)`` takes on behalf of its driver (see ``Driver.bus_options``).
BUS_OPTIONS: frozenset[str] = frozenset(
    {"max_concurrency", "max_queue", "on_full", "drain_timeout"}
)


class Driver(abc.ABC):
    """Where ``dispatch`` sends jobs. Subclass it to add a transport."""

    #: The ``QUEUE_DRIVER`` name of this driver.
    name: ClassVar[str]

    #: The bus-level options (a subset of :data:`BUS_OPTIONS`) this class's ``__init__``
    #: takes as keyword arguments; only those the caller gave are passed. None by default.
    bus_options: ClassVar[frozenset[str]] = frozenset()

    bus: Bus

    def bind(self, bus: Bus) -> None:
        """Called once, by the bus that will use this driver."""
        if getattr(self, "bus", None) is not None and self.bus is not bus:
            raise ValueError(
                f"{type(self).__name__} is already used by another EventBus ({self.bus!r}); "
                "a driver serves one bus, so give each EventBus its own instance"
            )
        self.bus = bus

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Entered by ``async with bus``: start workers or connections, and stop them."""
        yield

    @abc.abstractmethod
    async def submit(self, event: Event, listeners: tuple[Listener, ...], context: Context) -> None:
        """Accept one job per listener for ``event``; each runs in its own copy of ``context``."""

    async def join(self) -> None:  # noqa: B027 - optional hook, nothing to wait for by default
        """Wait until every job accepted so far has finished."""

    def check_registration(self, listener: Listener, key: type) -> None:  # noqa: B027
        """Reject a registration this driver cannot carry (called when it is made)."""

    def describe(self) -> dict[str, Any]:
        """Settings worth showing in ``eventbus list`` and logs."""
        return {"driver": self.name}
