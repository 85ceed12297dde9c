"""Test helpers: record dispatched events instead of running listeners, and assert on them.

``with bus.fake() as fake:`` (or ``with eventbus.testing.fake() as fake:`` for the default
bus) makes ``dispatch`` and ``dispatch_now`` of the faked event types record the event and run
nothing. The assertions fail with a message that shows what *was* dispatched, so a failing
test explains itself without a debugger. Fakes use only the bus's public interceptor hook,
``with bus.intercept(fn):``, which other test doubles can use too.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from ._event import Event

if TYPE_CHECKING:
    from ._bus import EventBus

__all__ = ["EventFake", "fake"]

T = TypeVar("T")

#: How many events a failure message shows in full before summarising the rest.
_SHOWN = 5
_REPR_LIMIT = 240


def fake(
    only: Iterable[type] | type | None = None, exclude: Iterable[type] | type | None = None
) -> EventFake:
    """Fake the default bus (:func:`eventbus.get_bus`): ``with eventbus.testing.fake() as f:``."""
    from ._api import get_bus

    return get_bus().fake(only=only, exclude=exclude)


class EventFake:
    """While active, ``dispatch``/``dispatch_now`` of faked event types only record.

    ``only=[A, B]`` fakes just those types (others run normally); ``exclude=[C]`` fakes all
    but those. Both match subclasses, as the dispatch table does. A fake is the bus's
    interceptor while active (:meth:`EventBus.intercept`), so fakes nest: an event the
    innermost fake lets through is offered to the one it covers.
    """

    def __init__(
        self,
        bus: EventBus,
        only: Iterable[type] | type | None = None,
        exclude: Iterable[type] | type | None = None,
    ) -> None:
        self.bus = bus
        self.only = _types(only, "only") if only is not None else None
        self.exclude = _types(exclude, "exclude") if exclude is not None else ()
        #: Every recorded event, in dispatch order.
        self.events: list[Event] = []
        self._interception: AbstractContextManager[None] | None = None

    def __repr__(self) -> str:
        state = "active" if self._interception is not None else "inactive"
        return f"<EventFake {self.bus.name} {state}, {len(self.events)} recorded, {_scope(self)}>"

    # -- what the bus calls ---------------------------------------------------------------

    def fakes(self, event_type: type) -> bool:
        """Whether events of ``event_type`` are recorded (not run) by this fake."""
        if self.only is not None and not issubclass(event_type, self.only):
            return False
        return not (self.exclude and issubclass(event_type, self.exclude))

    def intercept(self, event: Event) -> bool:
        """Record ``event`` and return True when it is faked; False lets it through.

        The bus's interceptor while the fake is active (:meth:`EventBus.intercept`): what
        it lets through goes to the fake it covers, if any, then to the listeners.
        """
        if self.fakes(type(event)):
            self.events.append(event)
            return True
        return False

    # -- activation -----------------------------------------------------------------------

    def __enter__(self) -> EventFake:
        if self._interception is not None:
            raise RuntimeError(f"{self!r} is already active; create another with bus.fake()")
        interception = self.bus.intercept(self.intercept)
        interception.__enter__()
        self._interception = interception
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        interception, self._interception = self._interception, None
        if interception is not None:
            interception.__exit__(None, None, None)

    def clear(self) -> None:
        """Forget what was recorded so far (e.g. the events of a test's setup)."""
        self.events.clear()

    # -- queries and assertions -----------------------------------------------------------

    def dispatched(
        self, event_type: type[T], where: Callable[[T], object] | None = None
    ) -> list[T]:
        """The recorded events that are instances of ``event_type`` (and match ``where``)."""
        _check_type(event_type, "dispatched")
        found: list[T] = [event for event in self.events if isinstance(event, event_type)]
        if where is None:
            return found
        return [event for event in found if where(event)]

    def assert_dispatched(
        self,
        event_type: type[T],
        where: Callable[[T], object] | None = None,
        times: int | None = None,
    ) -> None:
        """At least one ``event_type`` (matching ``where``) was dispatched; exactly ``times``."""
        _check_type(event_type, "assert_dispatched")
        if times is not None and (isinstance(times, bool) or not isinstance(times, int)):
            raise TypeError(f"times must be an int >= 0 or None, got {times!r}")
        if times is not None and times < 0:
            raise ValueError(f"times must be >= 0, got {times!r}")
        matches = self.dispatched(event_type, where)
        if (times is None and matches) or len(matches) == times:
            return
        what = _what(event_type, where)
        if times is None:
            head = f"expected {what} to be dispatched, but it was not"
        else:
            head = (
                f"expected {what} to be dispatched {_times(times)}, "
                f"but it was dispatched {_times(len(matches))}"
            )
        raise AssertionError(self._explain(head, event_type, where, matches))

    def assert_dispatched_once(
        self, event_type: type[T], where: Callable[[T], object] | None = None
    ) -> None:
        """Exactly one ``event_type`` (matching ``where``) was dispatched."""
        self.assert_dispatched(event_type, where, times=1)

    def assert_not_dispatched(
        self, event_type: type[T], where: Callable[[T], object] | None = None
    ) -> None:
        """No ``event_type`` (matching ``where``) was dispatched."""
        _check_type(event_type, "assert_not_dispatched")
        matches = self.dispatched(event_type, where)
        if not matches:
            return
        head = (
            f"expected {_what(event_type, where)} not to be dispatched, "
            f"but it was dispatched {_times(len(matches))}"
        )
        raise AssertionError(self._explain(head, event_type, where, matches))

    def assert_nothing_dispatched(self) -> None:
        """No faked event was dispatched at all."""
        if not self.events:
            return
        lines = [f"expected no events to be dispatched, but {_count(len(self.events))} were:"]
        lines += _summary(self.events)
        lines.append("in order:")
        lines += _shown(self.events)
        raise AssertionError("\n".join(lines))

    # -- failure messages -----------------------------------------------------------------

    def _explain(
        self,
        head: str,
        event_type: type,
        where: Callable[[Any], object] | None,
        matches: list[Any],
    ) -> str:
        lines = [head + "."]
        if not self.events:
            lines.append(f"nothing was dispatched on {self.bus.name} while faked.")
        else:
            lines.append(f"dispatched on {self.bus.name} ({_count(len(self.events))}):")
            lines += _summary(self.events)
        if matches:
            label = "matching" if where is not None else "recorded"
            lines.append(f"{label} {event_type.__name__} events:")
            lines += _shown(matches)
        else:
            same_type: list[Any] = self.dispatched(event_type)
            if same_type:
                lines.append(
                    f"closest candidates ({event_type.__name__} events that "
                    f"{_where_name(where)} rejected):"
                )
                lines += _shown(same_type)
            else:
                close = _closest(event_type, self.events)
                if close:
                    lines.append("closest candidates:")
                    lines += _shown(close)
        if not self.fakes(event_type):
            lines.append(
                f"note: this fake ({_scope(self)}) does not fake {event_type.__name__}, so "
                "its dispatches ran normally and were not recorded."
            )
        return "\n".join(lines)


def _types(given: Iterable[type] | type, arg: str) -> tuple[type, ...]:
    items = (given,) if isinstance(given, type) else tuple(given)
    for item in items:
        if not isinstance(item, type):
            raise TypeError(
                f"bus.fake({arg}=...) takes event classes, got {item!r}; "
                f"write {arg}=[{type(item).__name__}]"
            )
    return items


def _check_type(event_type: Any, method: str) -> None:
    if not isinstance(event_type, type):
        hint = (
            f"; pass the class: {method}({type(event_type).__name__}, where=...)"
            if isinstance(event_type, Event)
            else ""
        )
        raise TypeError(f"{method}() takes an event class, got {event_type!r}{hint}")


def _what(event_type: type, where: Callable[[Any], object] | None) -> str:
    name = event_type.__name__
    return name if where is None else f"{name} matching {_where_name(where)}"


def _where_name(where: Callable[[Any], object] | None) -> str:
    if where is None:
        return "no filter"
    name = getattr(where, "__qualname__", None) or repr(where)
    code = getattr(where, "__code__", None)
    if code is not None and "<lambda>" in name:
        return f"<lambda at {code.co_filename.rsplit('/', 1)[-1]}:{code.co_firstlineno}>"
    return name


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"


def _count(n: int) -> str:
    return "1 event" if n == 1 else f"{n} events"


def _names(types: tuple[type, ...]) -> str:
    return "[" + ", ".join(t.__name__ for t in types) + "]"


def _scope(fake: EventFake) -> str:
    parts = []
    if fake.only is not None:
        parts.append(f"only={_names(fake.only)}")
    if fake.exclude:
        parts.append(f"exclude={_names(fake.exclude)}")
    return ", ".join(parts) or "everything"


def _summary(events: list[Event]) -> list[str]:
    counts: dict[type, int] = {}
    for event in events:
        counts[type(event)] = counts.get(type(event), 0) + 1
    return [
        f"  {cls.__name__} ({getattr(cls, 'event_name', '?')!r}) x{n}" for cls, n in counts.items()
    ]


def _shown(events: list[Any]) -> list[str]:
    lines = [f"  {_repr(event)}" for event in events[:_SHOWN]]
    if len(events) > _SHOWN:
        lines.append(f"  ... and {len(events) - _SHOWN} more")
    return lines


def _repr(event: Any) -> str:
    text = repr(event)
    return text if len(text) <= _REPR_LIMIT else text[: _REPR_LIMIT - 3] + "..."


def _closest(event_type: type, events: list[Event]) -> list[Event]:
    """Recorded events most like ``event_type``: related by the MRO, then by name."""

    def score(event: Event) -> float:
        cls = type(event)
        related = issubclass(event_type, cls) or bool(
            set(cls.__mro__) & set(event_type.__mro__) - {Event, object, *Event.__mro__}
        )
        similarity = difflib.SequenceMatcher(None, cls.__name__, event_type.__name__)
        return (1.0 if related else 0.0) + similarity.ratio()

    scored = sorted(((score(e), i) for i, e in enumerate(events)), key=lambda p: (-p[0], p[1]))
    return [events[i] for _, i in scored]
