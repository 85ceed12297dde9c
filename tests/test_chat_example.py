"""The issue's user code, as written, in a real ``app`` package loaded by ``load_provider``."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import anyio
import pytest
from bson import ObjectId
from fixtures_core import Modules
from pydantic import ValidationError

import eventbus

pytestmark = pytest.mark.anyio

NEW_CHAT_EVENT = """
# app/events/new_chat_event.py
from bson import ObjectId              # any arbitrary type works as a field
from pydantic import Field
from eventbus import Event

class NewChatEvent(Event):
    chat_id: ObjectId = Field(..., description="The ID of the chat")
"""

NEW_USER_MESSAGE = """
from eventbus import Event

class NewUserMessage(Event):
    chat_id: object
    text: str
"""

# As in the issue, with a body that records what it saw (the is `...`).
GENERATE_CHAT_TITLE = """
# app/listeners/generate_chat_title.py
from typing import TYPE_CHECKING
from eventbus import EventListener
if TYPE_CHECKING:
    from app.events.new_chat_event import NewChatEvent

titled = []

class GenerateChatTitle(EventListener):
    async def handle(self, event: "NewChatEvent") -> None:
        titled.append(event.chat_id)
"""

NEW_MESSAGE_LISTENER = """
from eventbus import EventListener

from app.events.new_user_message import NewUserMessage

received = []

class NewMessageListener(EventListener):
    def handle(self, event: NewUserMessage) -> None:
        received.append(event.text)
"""

EVENT_PROVIDER = """
# app/event_provider.py
from eventbus import Event, EventListener

from app.events.new_chat_event import NewChatEvent
from app.events.new_user_message import NewUserMessage
from app.listeners.generate_chat_title import GenerateChatTitle
from app.listeners.new_message_listener import NewMessageListener

events: dict[type[Event], list[type[EventListener]]] = {
    NewChatEvent: [GenerateChatTitle],
    NewUserMessage: [NewMessageListener],
}
"""


class Chat:
    def __init__(self) -> None:
        self.id = ObjectId()


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Modules]:
    made = Modules(tmp_path, monkeypatch, package="app")
    made.forget()  # another test's `app` must not shadow this one
    made.write("events.new_chat_event", NEW_CHAT_EVENT)
    made.write("events.new_user_message", NEW_USER_MESSAGE)
    made.write("listeners.generate_chat_title", GENERATE_CHAT_TITLE)
    made.write("listeners.new_message_listener", NEW_MESSAGE_LISTENER)
    made.write("event_provider", EVENT_PROVIDER)
    yield made
    made.forget()


def modules(app: Modules) -> tuple[ModuleType, ModuleType, ModuleType]:
    return (
        app.load("events.new_chat_event"),
        app.load("listeners.generate_chat_title"),
        app.load("event_provider"),
    )


async def test_the_chat_example_as_written(app: Modules) -> None:
    # anywhere
    eventbus.load_provider("app.event_provider")  # fills the default bus
    events, listeners, _ = modules(app)
    NewChatEvent = events.NewChatEvent
    chat = Chat()
    with anyio.fail_after(5):
        await eventbus.dispatch_now(NewChatEvent(chat_id=chat.id))
    assert listeners.titled == [chat.id]
    assert isinstance(listeners.titled[0], ObjectId)


async def test_the_default_provider_module_is_app_event_provider(app: Modules) -> None:
    bus = eventbus.load_provider()
    assert bus is eventbus.get_bus()
    events, listeners, _ = modules(app)
    assert bus.listeners_for(events.NewChatEvent) == [listeners.GenerateChatTitle]


async def test_load_provider_into_a_given_bus(app: Modules) -> None:
    bus = eventbus.EventBus(name="chat")
    assert eventbus.load_provider("app.event_provider", bus=bus) is bus
    events, listeners, provider = modules(app)
    assert bus.registered_types() == list(provider.events)
    assert eventbus.get_bus().registered_types() == []  # the default bus is untouched

    messages = app.load("events.new_user_message")
    received = app.load("listeners.new_message_listener").received
    chat = Chat()
    await bus.dispatch_now(events.NewChatEvent(chat_id=chat.id))
    await bus.dispatch_now(messages.NewUserMessage(chat_id=chat.id, text="hi"))
    assert listeners.titled == [chat.id]
    assert received == ["hi"]


def test_the_event_is_named_and_frozen_with_a_real_object_id(app: Modules) -> None:
    NewChatEvent = modules(app)[0].NewChatEvent
    assert NewChatEvent.event_name == "new_chat"
    assert app.load("events.new_user_message").NewUserMessage.event_name == "new_user_message"
    chat_id = ObjectId()
    event = NewChatEvent(chat_id=chat_id)
    assert event.chat_id is chat_id
    assert NewChatEvent.model_fields["chat_id"].description == "The ID of the chat"
    with pytest.raises(ValidationError):
        event.chat_id = ObjectId()
    with pytest.raises(ValidationError):
        NewChatEvent(chat_id=str(chat_id))
    with pytest.raises(ValidationError):
        NewChatEvent()


async def test_a_failing_chat_listener_is_logged_and_raised(
    app: Modules, caplog: pytest.LogCaptureFixture
) -> None:
    eventbus.load_provider("app.event_provider")
    events, listeners, _ = modules(app)

    @eventbus.listen(events.NewChatEvent)
    async def notify_members(event: object) -> None:
        raise ConnectionError("push service down")

    chat = Chat()
    with caplog.at_level(logging.INFO, logger="eventbus"), pytest.raises(ExceptionGroup) as e:
        await eventbus.dispatch_now(events.NewChatEvent(chat_id=chat.id))
    assert listeners.titled == [chat.id]  # the other listener still ran
    assert e.group_contains(ConnectionError, match="push service down")
    (record,) = caplog.records
    assert record.event_name == "new_chat"  # type: ignore[attr-defined]
    assert record.listener.endswith("notify_members")  # type: ignore[attr-defined]
