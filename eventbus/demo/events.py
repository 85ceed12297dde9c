"""What happens in the chat app. ``ChatActivity`` is the base the audit trail listens on."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from eventbus import Event


class ChatId:
    """An opaque id, like bson's ObjectId: an arbitrary (non-pydantic) field type."""

    __slots__ = ("value",)

    def __init__(self, value: int) -> None:
        self.value = value

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, ChatId) and other.value == self.value

    def __hash__(self) -> int:
        return hash(self.value)

    def __repr__(self) -> str:
        return f"ChatId({self.value})"

    def __str__(self) -> str:
        return f"c-{self.value:04d}"


class ChatActivity(Event):
    """Anything a user did in a chat; every subclass reaches the listeners of this one."""

    chat_id: ChatId = Field(..., description="The chat it happened in")
    user_id: str = Field(..., description="Who did it")


class NewChatEvent(ChatActivity):
    """A user created a chat."""

    topic: str


class NewUserMessage(ChatActivity):
    """A user sent a message to a chat."""

    text: str
