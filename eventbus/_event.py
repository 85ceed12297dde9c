"""Events: immutable pydantic models with a stable name."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

__all__ = ["Event", "default_event_name", "snake_case"]

_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")

#: How many Event subclasses were created in this process: a worker that could not resolve
#: an event name rescans the classes only when this moved (a rescan is a full walk).
classes_created = 0


def snake_case(class_name: str) -> str:
    """``NewChatEvent`` -> ``"new_chat_event"``; ``HTTPRequest`` -> ``"http_request"``."""
    return _CAMEL_BOUNDARY.sub("_", class_name).lower()


def default_event_name(class_name: str) -> str:
    """``NewChatEvent`` -> ``"new_chat"``; ``HTTPRequestSeen`` -> ``"http_request_seen"``."""
    snake = snake_case(class_name)
    if snake.endswith("_event") and snake != "_event":
        snake = snake[: -len("_event")]
    return snake


class Event(BaseModel):
    """Something that happened. Frozen, so every listener sees the same facts.

    Arbitrary field types are allowed (``bson.ObjectId`` and friends). Each class gets a
    stable :attr:`event_name` derived from its class name; set ``event_name = "..."`` in the
    class body to choose another. The name is what logs, the CLI and the wire format use.
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    event_name: ClassVar[str] = "event"

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        global classes_created
        classes_created += 1
        super().__pydantic_init_subclass__(**kwargs)
        if "event_name" not in cls.__dict__:
            cls.event_name = default_event_name(cls.__name__)
        elif not isinstance(cls.__dict__["event_name"], str) or not cls.event_name:
            raise TypeError(
                f"{cls.__qualname__}.event_name must be a non-empty str, "
                f"got {cls.__dict__['event_name']!r}"
            )
