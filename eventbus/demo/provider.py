"""Who hears what: the provider dict, as in ``app/event_provider.py``."""

from __future__ import annotations

from eventbus import Event, EventListener

from .events import ChatActivity, NewChatEvent, NewUserMessage
from .listeners import AuditTrail, GenerateChatTitle, NewMessageListener

events: dict[type[Event], list[type[EventListener]]] = {
    NewChatEvent: [GenerateChatTitle],
    NewUserMessage: [NewMessageListener],
    ChatActivity: [AuditTrail],  # a base class: hears both events above
}
