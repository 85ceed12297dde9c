"""eventbus.discover: listener classes registered by their handle annotation."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

import pytest
from fixtures_core import write

import eventbus

EVENTS = """
from eventbus import Event


class ChatActivity(Event):
    chat_id: str


class NewChatEvent(ChatActivity):
    pass


class NewUserMessage(ChatActivity):
    text: str
"""


# A listener that names its event only under TYPE_CHECKING; ``events`` is where it imports from.
TITLES = """
from typing import TYPE_CHECKING

from eventbus import EventListener

if TYPE_CHECKING:
    from {events} import NewChatEvent


class GenerateChatTitle(EventListener):
    async def handle(self, event: "NewChatEvent") -> None: ...
"""


@pytest.fixture
def project(project: Path) -> Path:
    """The shared empty project root, with the events and an empty listeners package."""
    write(project, "app/__init__.py", "")
    write(project, "app/events.py", EVENTS)
    write(project, "app/listeners/__init__.py", "")
    return project


def names(bus: eventbus.EventBus, event_type: type) -> list[str]:
    return [getattr(t, "__name__", repr(t)) for t in bus.listeners_for(event_type)]


def test_registers_by_annotation_including_type_checking_imports_and_unions(
    project: Path,
) -> None:
    write(project, "app/listeners/titles.py", TITLES.format(events="app.events"))
    write(project, "app/listeners/nested/__init__.py", "")
    write(
        project,
        "app/listeners/nested/tracking.py",
        """
        from __future__ import annotations

        from eventbus import EventListener

        from app.events import ChatActivity, NewChatEvent, NewUserMessage


        class Track(EventListener):
            async def handle(self, event: NewChatEvent | NewUserMessage) -> None: ...


        class Audit(EventListener):
            def handle(self, event: ChatActivity) -> None: ...
    """,
    )
    bus = eventbus.EventBus(driver="sync")
    result = eventbus.discover("app.listeners", bus)
    events = importlib.import_module("app.events")
    assert result.modules == [
        "app.listeners",
        "app.listeners.nested",
        "app.listeners.nested.tracking",
        "app.listeners.titles",
    ]
    assert [(d.listener.__name__, d.events) for d in result.registered] == [
        ("Track", (events.NewChatEvent, events.NewUserMessage)),
        ("Audit", (events.ChatActivity,)),
        ("GenerateChatTitle", (events.NewChatEvent,)),
    ]
    assert result.skipped == [] and result
    assert names(bus, events.NewChatEvent) == ["Track", "GenerateChatTitle", "Audit"]
    assert names(bus, events.NewUserMessage) == ["Track", "Audit"]


def test_type_checking_name_shared_by_two_event_classes_is_told_apart(project: Path) -> None:
    write(
        project,
        "app/other_events.py",
        '''
        from eventbus import Event


        class NewChatEvent(Event):
            """Same class name as app.events.NewChatEvent, different event."""
    ''',
    )
    importlib.import_module("app.other_events")
    write(project, "app/listeners/titles.py", TITLES.format(events="..events"))
    bus = eventbus.EventBus(driver="sync")
    result = eventbus.discover("app.listeners", bus)
    assert result.registered[0].events == (importlib.import_module("app.events").NewChatEvent,)


def test_unusable_listeners_are_reported_not_guessed(
    project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(
        project,
        "app/listeners/broken.py",
        '''
        from eventbus import EventListener

        from app.events import NewChatEvent


        class NoAnnotation(EventListener):
            async def handle(self, event) -> None: ...  # type: ignore[no-untyped-def]


        class NotAnEvent(EventListener):
            async def handle(self, event: int) -> None: ...


        class NoHandle(EventListener):
            """A base class with helpers."""


        class NeedsArgs(EventListener):
            def __init__(self, client: object) -> None:
                self.client = client

            async def handle(self, event: NewChatEvent) -> None: ...


        class Fine(EventListener):
            async def handle(self, event: NewChatEvent) -> None: ...
    ''',
    )
    bus = eventbus.EventBus(driver="sync")
    with caplog.at_level(logging.WARNING, logger="eventbus"):
        result = eventbus.discover("app.listeners", bus)
    assert [d.listener.__name__ for d in result.registered] == ["Fine"]
    reasons = {s.listener.__name__: s.reason for s in result.skipped}
    assert list(reasons) == ["NoAnnotation", "NotAnEvent", "NoHandle", "NeedsArgs"]
    assert "no annotation" in reasons["NoAnnotation"]
    assert "not an Event subclass" in reasons["NotAnEvent"]
    assert "no handle method" in reasons["NoHandle"]
    assert "__init__ must take no arguments" in reasons["NeedsArgs"]
    assert not result
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 4 and all("not registering" in m for m in warned)
    events = importlib.import_module("app.events")
    assert names(bus, events.NewChatEvent) == ["Fine"]


def test_imported_listener_classes_are_not_registered_twice(project: Path) -> None:
    write(
        project,
        "app/listeners/a.py",
        """
        from eventbus import EventListener

        from app.events import NewChatEvent


        class Original(EventListener):
            async def handle(self, event: NewChatEvent) -> None: ...
    """,
    )
    write(project, "app/listeners/b.py", "from app.listeners.a import Original\n")
    result = eventbus.discover("app.listeners", eventbus.EventBus(driver="sync"))
    assert [d.listener.__name__ for d in result.registered] == ["Original"]


def test_default_bus_and_a_single_module(project: Path) -> None:
    write(
        project,
        "app/one.py",
        """
        from eventbus import EventListener

        from app.events import NewChatEvent


        class Solo(EventListener):
            async def handle(self, event: NewChatEvent) -> None: ...
    """,
    )
    result = eventbus.discover("app.one")
    events = importlib.import_module("app.events")
    assert result.modules == ["app.one"]
    assert names(eventbus.get_bus(), events.NewChatEvent) == ["Solo"]


def test_missing_package_and_broken_module(project: Path) -> None:
    with pytest.raises(ModuleNotFoundError, match=r"listener package 'app\.nope' was not found"):
        eventbus.discover("app.nope")
    write(project, "app/listeners/bad.py", "import not_installed_anywhere\n")
    with pytest.raises(ModuleNotFoundError) as exc:
        eventbus.discover("app.listeners")
    assert exc.value.name == "not_installed_anywhere"  # the real cause, unchanged
