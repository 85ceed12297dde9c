"""A listener that holds the worker running it until the test opens the gate.

For tests of what happens while the farm is busy (a full queue, a waiting producer, a stop):
the test waits on ``started`` to know a worker holds the first job, fills the queue, then
sets ``gate``. ``ran`` lists the ``n`` of each event in the order the listener finished it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import anyio

from eventbus import Event, EventBus


class Gated(NamedTuple):
    gate: anyio.Event
    started: anyio.Event
    ran: list[int]


def gated_listener(bus: EventBus, event_type: type[Event]) -> Gated:
    """Register on ``bus`` a listener for ``event_type`` (it needs an ``n`` field)."""
    held = Gated(anyio.Event(), anyio.Event(), [])

    @bus.listen(event_type)
    async def gated(event: Any) -> None:
        held.started.set()
        await held.gate.wait()
        held.ran.append(event.n)

    return held
