"""The process-wide default bus and the module-level functions that use it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar, overload

from ._bus import EventBus
from ._event import Event

__all__ = ["dispatch", "dispatch_now", "get_bus", "listen", "peek_bus", "set_bus"]

T = TypeVar("T")

_default_bus: EventBus | None = None


def get_bus() -> EventBus:
    """The process-wide default bus, created on first use (driver from ``QUEUE_DRIVER``)."""
    global _default_bus
    if _default_bus is None:
        _default_bus = EventBus(name="default")
    return _default_bus


def peek_bus() -> EventBus | None:
    """The default bus if one exists, without creating it."""
    return _default_bus


def set_bus(bus: EventBus | None) -> EventBus | None:
    """Make ``bus`` the default (``None``: a fresh one on next use). Returns the previous."""
    global _default_bus
    previous, _default_bus = _default_bus, bus
    return previous


async def dispatch(event: Event) -> None:
    """Queue ``event``'s listeners on the default bus; see :meth:`EventBus.dispatch`."""
    await get_bus().dispatch(event)


async def dispatch_now(event: Event) -> None:
    """Run ``event``'s listeners on the default bus now; see :meth:`EventBus.dispatch_now`."""
    await get_bus().dispatch_now(event)


# An Event class first: otherwise `@listen(NewChatEvent)` would match `(target: T) -> T`.
@overload
def listen(
    event: type[Event],
    /,
    *events: type,
    tries: int | None = None,
    backoff: float | Sequence[float] | None = None,
    timeout: float | None = None,
) -> Callable[[T], T]: ...
@overload
def listen(target: T, /) -> T: ...
@overload
def listen(
    *events: type,
    tries: int | None = None,
    backoff: float | Sequence[float] | None = None,
    timeout: float | None = None,
) -> Callable[[T], T]: ...
def listen(*events: Any, **policy: Any) -> Any:
    """``@eventbus.listen(...)`` on the default bus; see :meth:`EventBus.listen`."""
    return get_bus().listen(*events, **policy)
