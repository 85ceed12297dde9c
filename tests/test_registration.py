"""Requirement 3: provider dict, decorators (incl. inference from annotations), default bus."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from fixtures_core import Modules

import eventbus
from eventbus import Event, EventBus, EventListener

pytestmark = pytest.mark.anyio


class ChatOpened(Event):
    chat_id: int = 0


class MessagePosted(Event):
    text: str = ""


class RecordOpened(EventListener):
    async def handle(self, event: ChatOpened) -> None: ...


class RecordPosted(EventListener):
    async def handle(self, event: MessagePosted) -> None: ...


class SyncRecorder(EventListener):
    def handle(self, event: ChatOpened) -> None: ...


@pytest.fixture
def modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Modules]:
    made = Modules(tmp_path, monkeypatch)
    yield made
    made.forget()


# -- provider dict ---------------------------------------------------------------------


def test_provider_dict_in_the_constructor() -> None:
    bus = EventBus({ChatOpened: [RecordOpened, SyncRecorder], MessagePosted: [RecordPosted]})
    assert bus.listeners_for(ChatOpened) == [RecordOpened, SyncRecorder]
    assert bus.listeners_for(MessagePosted) == [RecordPosted]
    assert bus.registered_types() == [ChatOpened, MessagePosted]


def test_register_adds_to_what_is_there() -> None:
    bus = EventBus({ChatOpened: [RecordOpened]})
    bus.register({ChatOpened: [SyncRecorder], MessagePosted: (RecordPosted,)})
    assert bus.listeners_for(ChatOpened) == [RecordOpened, SyncRecorder]
    assert bus.listeners_for(MessagePosted) == [RecordPosted]


def test_registering_the_same_listener_twice_keeps_one() -> None:
    bus = EventBus({ChatOpened: [RecordOpened, RecordOpened]})
    bus.register({ChatOpened: [RecordOpened]})
    assert bus.listeners_for(ChatOpened) == [RecordOpened]
    assert [listener.target for listener in bus.listeners()] == [RecordOpened]


def test_functions_in_a_provider_dict() -> None:
    async def on_open(event: ChatOpened) -> None: ...

    def on_open_sync(event: ChatOpened) -> None: ...

    bus = EventBus({ChatOpened: [on_open, on_open_sync]})
    assert bus.listeners_for(ChatOpened) == [on_open, on_open_sync]
    assert [listener.is_async for listener in bus.listeners()] == [True, False]


def test_nothing_registered_means_no_listeners() -> None:
    assert EventBus().listeners_for(ChatOpened) == []


# -- decorators ------------------------------------------------------------------------


async def test_listen_on_a_function_returns_it_unchanged() -> None:
    bus = EventBus()
    seen: list[Event] = []

    async def on_open(event: ChatOpened) -> None:
        seen.append(event)

    assert bus.listen(ChatOpened)(on_open) is on_open
    event = ChatOpened(chat_id=1)
    await on_open(event)  # still directly callable
    await bus.dispatch_now(event)
    assert seen == [event, event]


def test_listen_on_a_class_returns_it_unchanged() -> None:
    bus = EventBus()

    class OnOpen(EventListener):
        async def handle(self, event: ChatOpened) -> None: ...

    assert bus.listen(ChatOpened)(OnOpen) is OnOpen
    assert bus.listeners_for(ChatOpened) == [OnOpen]


def test_listen_to_several_events() -> None:
    bus = EventBus()

    @bus.listen(ChatOpened, MessagePosted)
    def on_either(event: Event) -> None: ...

    assert bus.listeners_for(ChatOpened) == [on_either]
    assert bus.listeners_for(MessagePosted) == [on_either]


def test_bare_listen_infers_from_a_function_annotation() -> None:
    bus = EventBus()

    @bus.listen
    async def on_open(event: ChatOpened) -> None: ...

    assert bus.listeners_for(ChatOpened) == [on_open]
    assert bus.listeners_for(MessagePosted) == []


def test_bare_listen_infers_from_handle_annotation() -> None:
    bus = EventBus()

    @bus.listen
    class OnPosted(EventListener):
        async def handle(self, event: MessagePosted) -> None: ...

    assert bus.listeners_for(MessagePosted) == [OnPosted]


def test_bare_listen_with_a_union_annotation() -> None:
    bus = EventBus()

    @bus.listen
    def on_either(event: ChatOpened | MessagePosted) -> None: ...

    assert bus.listeners_for(ChatOpened) == [on_either]
    assert bus.listeners_for(MessagePosted) == [on_either]


def test_listen_with_policy_only_still_infers() -> None:
    bus = EventBus()

    @bus.listen(tries=3, backoff=[0.1, 0.2], timeout=5)
    async def on_open(event: ChatOpened) -> None: ...

    assert bus.listeners_for(ChatOpened) == [on_open]
    (listener,) = bus.listeners()
    assert listener.policy.as_dict() == {"tries": 3, "backoff": [0.1, 0.2], "timeout": 5.0}


def test_class_attributes_set_the_policy() -> None:
    class Patient(EventListener):
        tries = 4
        backoff = 2
        timeout = 1.5

        async def handle(self, event: ChatOpened) -> None: ...

    bus = EventBus({ChatOpened: [Patient]})
    (listener,) = bus.listeners()
    assert listener.policy.as_dict() == {"tries": 4, "backoff": 2.0, "timeout": 1.5}
    assert listener.name.endswith("Patient")


def test_string_annotations_resolve_against_the_module(modules: Modules) -> None:
    modules.write(
        "listeners",
        """
        from __future__ import annotations

        from eventbus import Event, EventListener

        class Created(Event):
            pass

        class OnCreated(EventListener):
            async def handle(self, event: Created) -> None: ...

        async def on_created(event: "Created") -> None: ...
        """,
    )
    mod = modules.load("listeners")
    bus = EventBus()
    assert bus.listen(mod.OnCreated) is mod.OnCreated
    assert bus.listen(mod.on_created) is mod.on_created
    assert bus.listeners_for(mod.Created) == [mod.OnCreated, mod.on_created]


def test_type_checking_import_already_loaded(modules: Modules) -> None:
    """The issue's shape: the event module is imported only under TYPE_CHECKING."""
    modules.write(
        "events",
        """
        from eventbus import Event

        class Created_TOK(Event):
            pass
        """,
    )
    modules.write(
        "listeners",
        """
        from typing import TYPE_CHECKING

        from eventbus import EventListener

        if TYPE_CHECKING:
            from PKG.events import Created_TOK

        class OnCreated(EventListener):
            async def handle(self, event: "Created_TOK") -> None: ...
        """,
    )
    events = modules.load("events")
    listeners = modules.load("listeners")
    assert not hasattr(listeners, f"Created_{modules.token}")
    bus = EventBus()
    bus.listen(listeners.OnCreated)
    assert bus.listeners_for(getattr(events, f"Created_{modules.token}")) == [listeners.OnCreated]


async def test_type_checking_import_resolved_when_first_needed(modules: Modules) -> None:
    """Listeners may be registered before the event module is imported at all."""
    modules.write(
        "events",
        """
        from eventbus import Event

        class Created_TOK(Event):
            n: int
        """,
    )
    modules.write(
        "listeners",
        """
        from __future__ import annotations

        from typing import TYPE_CHECKING

        from eventbus import EventListener

        if TYPE_CHECKING:
            from PKG.events import Created_TOK

        seen = []

        class OnCreated(EventListener):
            async def handle(self, event: Created_TOK) -> None:
                seen.append(event.n)
        """,
    )
    listeners = modules.load("listeners")
    bus = EventBus()
    bus.listen(listeners.OnCreated)
    events = modules.load("events")  # only now does the class exist
    created = getattr(events, f"Created_{modules.token}")
    await bus.dispatch_now(created(n=7))
    assert listeners.seen == [7]
    assert bus.listeners_for(created) == [listeners.OnCreated]


# -- the default bus -------------------------------------------------------------------


def test_get_bus_is_created_once() -> None:
    bus = eventbus.get_bus()
    assert isinstance(bus, EventBus)
    assert eventbus.get_bus() is bus


def test_set_bus_replaces_the_default_and_returns_the_previous() -> None:
    first = eventbus.get_bus()
    mine = EventBus(name="mine")
    assert eventbus.set_bus(mine) is first
    assert eventbus.get_bus() is mine
    assert eventbus.set_bus(None) is mine
    assert eventbus.get_bus() is not mine


async def test_module_level_listen_and_dispatch_now_use_the_default_bus() -> None:
    seen: list[str] = []

    @eventbus.listen(ChatOpened)
    def by_key(event: ChatOpened) -> None:
        seen.append("by_key")

    @eventbus.listen
    async def inferred(event: ChatOpened) -> None:
        seen.append("inferred")

    assert eventbus.get_bus().listeners_for(ChatOpened) == [by_key, inferred]
    with anyio.fail_after(5):
        await eventbus.dispatch_now(ChatOpened())
    assert seen == ["by_key", "inferred"]
    assert EventBus().listeners_for(ChatOpened) == []  # other buses are untouched


def test_a_repeated_registration_is_logged_with_event_name_and_listener(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = EventBus({ChatOpened: [RecordOpened]})
    with caplog.at_level(logging.DEBUG, logger="eventbus"):
        bus.register({ChatOpened: [RecordOpened]})
    (record,) = caplog.records
    assert record.name == "eventbus"
    assert record.event_name == "chat_opened"  # type: ignore[attr-defined]
    assert record.listener.endswith("RecordOpened")  # type: ignore[attr-defined]
    assert "already registered" in record.getMessage()
