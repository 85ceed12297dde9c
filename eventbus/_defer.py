"""``bus.defer()``: hold dispatches until a block succeeds, then release them in order.

The buffer lives in a ContextVar, so it is task-local and inherited by tasks started inside
the block; a released event keeps the context of its ``dispatch`` call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import Context, ContextVar
from typing import TYPE_CHECKING

from ._log import NO_JOB, logger

if TYPE_CHECKING:
    from ._bus import EventBus
    from ._event import Event

__all__ = ["deferred", "deferring"]


class _DeferBuffer:
    __slots__ = ("bus", "items", "open", "parent")

    def __init__(self, bus: EventBus, parent: _DeferBuffer | None) -> None:
        self.bus = bus
        self.parent = parent
        self.items: list[tuple[Event, Context]] = []
        self.open = True

    def for_bus(self, bus: EventBus) -> _DeferBuffer | None:
        buffer: _DeferBuffer | None = self
        while buffer is not None:
            if buffer.bus is bus and buffer.open:
                return buffer
            buffer = buffer.parent
        return None


deferred: ContextVar[_DeferBuffer | None] = ContextVar("eventbus.deferred", default=None)


@asynccontextmanager
async def deferring(bus: EventBus) -> AsyncIterator[None]:
    """The block behind :meth:`EventBus.defer`."""
    parent = deferred.get()
    buffer = _DeferBuffer(bus, parent)
    token = deferred.set(buffer)
    try:
        yield
    except BaseException:
        buffer.open = False
        if buffer.items:
            logger.info(
                "discarding %d deferred event(s) after an error: %s",
                len(buffer.items),
                ", ".join(event.event_name for event, _ in buffer.items),
                extra=NO_JOB,
            )
        raise
    finally:
        deferred.reset(token)
    buffer.open = False
    outer = parent.for_bus(bus) if parent is not None else None
    if outer is not None:
        outer.items.extend(buffer.items)
        return
    for index, (event, context) in enumerate(buffer.items):
        try:
            await bus._send(event, bus._table.lookup(type(event)), context)
        except BaseException as exc:
            rest = len(buffer.items) - index
            exc.add_note(f"{rest} deferred event(s) from this one on were not dispatched")
            raise
