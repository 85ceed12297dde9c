"""Issue 10 #12: an event type nothing hears is warned about, once per type per bus.

(The missing-provider half of #12 is in test_boot.py.)
"""

from __future__ import annotations

import logging

import pytest

import eventbus
from eventbus import Event, EventBus


class Unheard(Event):
    n: int = 0


class AlsoUnheard(Event):
    pass


def unheard_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "eventbus" and r.getMessage().startswith("no listeners for")
    ]


@pytest.mark.anyio
async def test_an_unheard_event_type_is_warned_once_per_type_per_bus(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = EventBus()
    with caplog.at_level(logging.WARNING, logger="eventbus"):
        async with bus:
            await bus.dispatch(Unheard(n=1))
            await bus.dispatch(Unheard(n=2))
            await bus.dispatch_now(Unheard(n=3))
            async with bus.defer():
                await bus.dispatch(AlsoUnheard())
            await bus.dispatch_now(AlsoUnheard())
        other = EventBus(driver="sync")
        await other.dispatch_now(Unheard())
    found = unheard_warnings(caplog)
    assert [(r.levelno, r.event_name) for r in found] == [  # type: ignore[attr-defined]
        (logging.WARNING, "unheard"),
        (logging.WARNING, "also_unheard"),
        (logging.WARNING, "unheard"),
    ]
    assert repr(bus) in found[0].getMessage() and repr(other) in found[2].getMessage()
    assert "load_provider" in found[0].getMessage()


@pytest.mark.anyio
async def test_a_heard_event_type_is_not_warned(caplog: pytest.LogCaptureFixture) -> None:
    ran: list[int] = []
    bus = EventBus()

    @bus.listen
    async def record(event: Unheard) -> None:
        ran.append(event.n)

    with caplog.at_level(logging.WARNING, logger="eventbus"):
        await bus.dispatch_now(Unheard(n=1))
        await eventbus.dispatch_now(Unheard(n=2))  # the default bus has no listener
    assert ran == [1]
    [found] = unheard_warnings(caplog)
    assert "<EventBus default" in found.getMessage()
