"""Test helpers: record dispatched events instead of running listeners."""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ._event import Event

if TYPE_CHECKING:
    from ._bus import EventBus

__all__ = ["EventFake"]


class EventFake:
    """While active, ``dispatch``/``dispatch_now`` of faked event types only record."""

    def __init__(
        self,
        bus: EventBus,
        only: Iterable[type] | None = None,
        exclude: Iterable[type] | None = None,
    ) -> None:
        self.bus = bus
        self.only = tuple(only) if only is not None else None
        self.exclude = tuple(exclude) if exclude is not None else ()
        self.events: list[Event] = []
        self._previous: EventFake | None = None

    def intercept(self, event: Event) -> bool:
        """Record ``event`` and return True when it is faked; False lets it run."""
        if self.only is not None and not isinstance(event, self.only):
            return False
        if self.exclude and isinstance(event, self.exclude):
            return False
        self.events.append(event)
        return True

    def __enter__(self) -> EventFake:
        self._previous, self.bus._fake = self.bus._fake, self
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.bus._fake = self._previous

    def dispatched(self, event_type: type[Any]) -> list[Any]:
        return [event for event in self.events if isinstance(event, event_type)]
