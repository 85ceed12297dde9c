"""Requirement 4: the dispatch table is keyed by the event's MRO, compiled and cached."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from eventbus import Event, EventBus

pytestmark = pytest.mark.anyio


class Auditable:
    """A mixin: not an Event, but a valid key for every event that has it."""


class ChatEvent(Event):
    pass


class ChatOpened(ChatEvent):
    pass


class ChatClosed(ChatEvent, Auditable):
    pass


class PrivateChatClosed(ChatClosed):
    pass


class Unrelated(Event):
    pass


def recorder(log: list[str], name: str) -> Callable[[Event], Any]:
    async def listener(event: Event) -> None:
        log.append(name)

    listener.__qualname__ = name
    return listener


async def test_a_listener_hears_its_class_and_every_subclass() -> None:
    log: list[str] = []
    bus = EventBus()
    bus.listen(ChatEvent)(recorder(log, "chat"))
    await bus.dispatch_now(ChatEvent())
    await bus.dispatch_now(ChatOpened())
    await bus.dispatch_now(PrivateChatClosed())
    await bus.dispatch_now(Unrelated())
    assert log == ["chat", "chat", "chat"]


async def test_a_listener_on_a_subclass_does_not_hear_the_base() -> None:
    log: list[str] = []
    bus = EventBus()
    bus.listen(ChatOpened)(recorder(log, "opened"))
    await bus.dispatch_now(ChatEvent())
    await bus.dispatch_now(ChatClosed())
    assert log == []


async def test_a_listener_on_event_hears_every_event() -> None:
    log: list[str] = []
    bus = EventBus()
    bus.listen(Event)(recorder(log, "all"))
    for event in (ChatOpened(), PrivateChatClosed(), Unrelated(), Event()):
        await bus.dispatch_now(event)
    assert log == ["all"] * 4


async def test_a_mixin_is_a_key() -> None:
    log: list[str] = []
    bus = EventBus()
    bus.listen(Auditable)(recorder(log, "audit"))
    await bus.dispatch_now(ChatClosed())
    await bus.dispatch_now(PrivateChatClosed())
    await bus.dispatch_now(ChatOpened())  # no Auditable in its MRO
    assert log == ["audit", "audit"]


async def test_order_is_most_specific_class_first_then_registration_order() -> None:
    log: list[str] = []
    # Registered in an order unlike the MRO's, to show the table sorts by MRO.
    bus = EventBus()
    bus.listen(Event)(recorder(log, "event"))
    bus.listen(Auditable)(recorder(log, "audit"))
    bus.listen(ChatEvent)(recorder(log, "chat-1"))
    bus.listen(PrivateChatClosed)(recorder(log, "private"))
    bus.listen(ChatClosed)(recorder(log, "closed-1"))
    bus.listen(ChatEvent)(recorder(log, "chat-2"))
    bus.listen(ChatClosed)(recorder(log, "closed-2"))
    # PrivateChatClosed -> ChatClosed -> ChatEvent -> Event -> ... -> Auditable
    expected = ["private", "closed-1", "closed-2", "chat-1", "chat-2", "event", "audit"]
    mro = PrivateChatClosed.__mro__
    assert mro.index(Event) < mro.index(Auditable)
    await bus.dispatch_now(PrivateChatClosed())
    assert log == expected
    assert [t.__qualname__ for t in bus.listeners_for(PrivateChatClosed)] == expected


async def test_a_listener_reachable_through_several_classes_runs_once() -> None:
    log: list[str] = []
    shared = recorder(log, "shared")
    bus = EventBus()
    bus.listen(ChatClosed, ChatEvent, Auditable, Event)(shared)
    bus.register({PrivateChatClosed: [shared]})
    await bus.dispatch_now(PrivateChatClosed())
    assert log == ["shared"]
    assert bus.listeners_for(PrivateChatClosed) == [shared]


def test_routes_say_through_which_class_a_listener_is_reached() -> None:
    log: list[str] = []
    on_closed, on_all = recorder(log, "closed"), recorder(log, "all")
    bus = EventBus({ChatClosed: [on_closed], Event: [on_all]})
    routes = bus.routes_for(PrivateChatClosed)
    assert [(r.listener.target, r.key, r.inherited) for r in routes] == [
        (on_closed, ChatClosed, True),
        (on_all, Event, True),
    ]
    assert [r.inherited for r in bus.routes_for(ChatClosed)] == [False, True]


async def test_late_registration_invalidates_the_compiled_table() -> None:
    log: list[str] = []
    bus = EventBus()
    bus.listen(ChatEvent)(recorder(log, "chat"))
    await bus.dispatch_now(ChatOpened())  # compiles and caches ChatOpened's listeners
    assert bus.listeners_for(ChatOpened) == [bus.listeners()[0].target]

    bus.listen(Event)(recorder(log, "late-base"))  # on a base class: must reach ChatOpened
    bus.register({ChatOpened: [recorder(log, "late-exact")]})
    await bus.dispatch_now(ChatOpened())
    assert log == ["chat", "late-exact", "chat", "late-base"]


async def test_late_inferred_registration_invalidates_too() -> None:
    log: list[str] = []
    bus = EventBus()
    await bus.dispatch_now(ChatOpened())
    assert bus.listeners_for(ChatOpened) == []

    @bus.listen
    async def late(event: ChatEvent) -> None:
        log.append("late")

    await bus.dispatch_now(ChatOpened())
    assert log == ["late"]


def test_lookup_is_independent_of_unrelated_registrations() -> None:
    """Functional: many unrelated types change neither the result nor its compiled form."""
    log: list[str] = []
    on_chat = recorder(log, "chat")
    bus = EventBus({ChatEvent: [on_chat]})
    before = bus.listeners_for(ChatOpened)
    for i in range(200):
        unrelated = type(f"Noise{i}", (Event,), {"__module__": __name__})
        bus.register({unrelated: [recorder(log, f"noise{i}")]})
    assert bus.listeners_for(ChatOpened) == before == [on_chat]
    assert len(bus.routes_for(ChatOpened)) == 1
    assert len(bus.registered_types()) == 201


async def test_events_of_the_same_type_share_one_compiled_table() -> None:
    log: list[str] = []
    bus = EventBus({ChatEvent: [recorder(log, "a")], Event: [recorder(log, "b")]})
    first = bus.listeners_for(ChatOpened)
    await bus.dispatch_now(ChatOpened())
    assert bus.listeners_for(ChatOpened) == first
    assert log == ["a", "b"]
