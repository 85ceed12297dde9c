"""The seam between :class:`~eventbus.EventBus` and where queued jobs run.

A driver receives, for each ``dispatch``, the event, the listeners it reaches (already
looked up, in order) and the dispatching caller's context. Everything else (lookup, fakes,
``defer``, the failure path, stats) stays in the bus, so a driver is small:

- :meth:`Driver.submit` accepts one event's jobs. It must not raise for a *listener's*
  failure; it may raise when it cannot accept the jobs (farm not running, queue full,
  broker unreachable), and then none of the failure is silent. An event whose ``submit``
  raised is not counted in ``stats.dispatched`` (the bus takes care of that).
- :meth:`Driver.running` is entered by ``async with bus`` and owns whatever runs the jobs.
- :meth:`Driver.join` waits for the jobs accepted so far.

Jobs report back through the bus: a success is ``bus.stats.succeeded += 1``;
``bus.job_retrying``, ``bus.job_failed`` and ``bus.job_dropped`` keep the stats, logs,
``failed()`` and ``on_failure`` uniform across drivers.

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
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from .._bus import EventBus
    from .._event import Event
    from .._listener import Listener

__all__ = ["BUS_OPTIONS", "Driver"]

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

    bus: EventBus

    def bind(self, bus: EventBus) -> None:
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
