"""Bus-level mechanisms every driver relies on: all-or-nothing registration, exact counts."""

from __future__ import annotations

from contextvars import Context

import pytest

from eventbus import Driver, Event, EventBus, EventListener, Listener, RegistrationError

pytestmark = pytest.mark.anyio


class Opened(Event):
    pass


class Closed(Event):
    pass


class Audit(EventListener):
    async def handle(self, event: Event) -> None:
        pass


class NeedsArgs(EventListener):
    def __init__(self, db: object) -> None:
        self.db = db

    async def handle(self, event: Event) -> None:
        pass


def test_a_bad_entry_registers_nothing_from_the_mapping() -> None:
    bus = EventBus(driver="sync")
    with pytest.raises(RegistrationError, match="NeedsArgs needs arguments"):
        bus.register({Opened: [Audit], Closed: [Audit, NeedsArgs]})
    assert bus.registered_types() == []
    assert bus.listeners() == []
    assert bus.listeners_for(Opened) == []


def test_a_mapping_value_that_is_not_a_list_names_the_source() -> None:
    with pytest.raises(
        RegistrationError,
        match=r"app\.event_provider\.events must be a dict .*listeners for .*Opened must be a list",
    ):
        EventBus(driver="sync").register({Opened: {Audit}}, source="app.event_provider.events")


class Refusing(Driver):
    """Accepts the first event, refuses every other one."""

    name = "refusing"

    def __init__(self) -> None:
        self.accepted: list[Event] = []

    async def submit(self, event: Event, listeners: tuple[Listener, ...], context: Context) -> None:
        if self.accepted:
            raise ConnectionError("no room at the broker")
        self.accepted.append(event)


async def test_an_event_the_driver_refused_is_not_counted_as_dispatched() -> None:
    driver = Refusing()
    bus = EventBus({Opened: [Audit]}, driver=driver)
    await bus.dispatch(Opened())
    with pytest.raises(ConnectionError):
        await bus.dispatch(Opened())
    assert len(driver.accepted) == 1
    assert bus.stats.dispatched == 1
