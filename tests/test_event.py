"""Requirement 1: events are frozen pydantic models with a stable, overridable name."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from eventbus import Event


class NewChatEvent(Event):
    chat_id: int


class NewUserMessage(Event):
    text: str = ""


class HTTPRequestSeen(Event):
    pass


class Renamed(Event):
    event_name = "chat.renamed"


class RenamedChild(Renamed):
    pass


class Opaque:
    """Not a pydantic type: needs arbitrary_types_allowed."""

    def __init__(self, value: str) -> None:
        self.value = value


class CarriesOpaque(Event):
    thing: Opaque


def test_event_is_a_pydantic_model() -> None:
    event = NewChatEvent(chat_id=1)
    assert isinstance(event, BaseModel)
    assert event.model_dump() == {"chat_id": 1}


def test_fields_are_validated() -> None:
    with pytest.raises(ValidationError):
        NewChatEvent(chat_id="not a number")  # type: ignore[arg-type]


def test_assigning_a_field_raises() -> None:
    event = NewChatEvent(chat_id=1)
    with pytest.raises(ValidationError, match="frozen"):
        event.chat_id = 2  # type: ignore[misc]
    assert event.chat_id == 1


def test_arbitrary_field_types_are_allowed() -> None:
    thing = Opaque("x")
    assert CarriesOpaque(thing=thing).thing is thing
    with pytest.raises(ValidationError):
        CarriesOpaque(thing="not an Opaque")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("cls", "name"),
    [
        (NewChatEvent, "new_chat"),
        (NewUserMessage, "new_user_message"),
        (HTTPRequestSeen, "http_request_seen"),
        (Event, "event"),
    ],
)
def test_event_name_is_snake_case_without_event_suffix(cls: type[Event], name: str) -> None:
    assert cls.event_name == name
    assert cls.model_construct().event_name == name


def test_event_name_is_not_a_field() -> None:
    assert "event_name" not in NewChatEvent.model_fields
    assert "event_name" not in NewChatEvent(chat_id=1).model_dump()


def test_event_name_can_be_overridden_per_class() -> None:
    assert Renamed.event_name == "chat.renamed"
    assert "event_name" not in Renamed.model_fields


def test_a_subclass_of_a_renamed_event_gets_its_own_name() -> None:
    assert RenamedChild.event_name == "renamed_child"


def test_event_name_must_be_a_non_empty_string() -> None:
    with pytest.raises(TypeError, match=r"BadName\.event_name must be a non-empty str"):

        class BadName(Event):
            event_name = ""
