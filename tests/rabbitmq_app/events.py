"""Events of the RabbitMQ test app."""

from __future__ import annotations

from typing import Annotated

from bson import ObjectId
from pydantic import BeforeValidator, PlainSerializer

from eventbus import Event

#: A bson ObjectId that travels as its 24-hex-digit string and comes back an ObjectId.
PyObjectId = Annotated[
    ObjectId,
    BeforeValidator(lambda value: ObjectId(value) if isinstance(value, str) else value),
    PlainSerializer(str, return_type=str, when_used="json"),
]


class Numbered(Event):
    n: int


class Slow(Event):
    n: int
    seconds: float


class Doomed(Event):
    n: int


class ChatOpened(Event):
    chat_id: PyObjectId
    title: str
