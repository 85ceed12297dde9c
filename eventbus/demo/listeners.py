"""The chat app's listeners: a fresh instance handles each event."""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventbus import EventListener

from . import app

if TYPE_CHECKING:
    from .events import ChatActivity, NewChatEvent, NewUserMessage

_TITLE_PREFIX = {
    "en": "Chat about",
    "pt-BR": "Conversa sobre",
    "de": "Chat zum Thema",
    "fr": "Discussion sur",
}


class TitleServiceBusy(Exception):
    """The (pretend) title service asks us to come back later."""


class GenerateChatTitle(EventListener):
    """Names a new chat in its creator's language; the title service is sometimes busy."""

    tries = 3
    backoff = 0.005

    async def handle(self, event: NewChatEvent) -> None:
        app.observe("GenerateChatTitle", event)
        app.state.title_attempts[event.chat_id] += 1
        attempt = app.state.title_attempts[event.chat_id]
        await app.io()
        if attempt <= app.flaky_failures(event.chat_id):
            if app.state.retried_example is None:
                app.state.retried_example = f"GenerateChatTitle for chat {event.chat_id}"
            raise TitleServiceBusy(f"title service busy for chat {event.chat_id}")
        prefix = _TITLE_PREFIX.get(app.current_locale() or "en", "Chat about")
        app.state.titles[event.chat_id] = f"{prefix} {event.topic}"


class NewMessageListener(EventListener):
    """Stores the message and would notify the other members of the chat."""

    async def handle(self, event: NewUserMessage) -> None:
        app.observe("NewMessageListener", event)
        await app.io()
        app.state.messages.setdefault(event.chat_id, []).append(event.text)


class AuditTrail(EventListener):
    """Registered on the ChatActivity base class, so it hears every chat event."""

    async def handle(self, event: ChatActivity) -> None:
        app.observe("AuditTrail", event)
        await app.io()
        app.state.audit.append((event.event_name, event.user_id, event.chat_id))
