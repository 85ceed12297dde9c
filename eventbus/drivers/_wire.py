"""The wire format of a queued job: a versioned JSON envelope, never pickle.

One message carries one job (an event for one listener)::

    {"v": 1, "job": "<job id>", "event_id": "<event id>", "event": "new_chat",
     "listener": "app.listeners.GenerateChatTitle", "attempt": 1, "at": 1718000000.25,
     "context": {"user_id": "u1"}, "data": {...the event's pydantic JSON...}}

Names travel, code does not: a worker looks ``event`` and ``listener`` up in its own bus,
so a message can never make a worker import or call anything it did not register. The
event is encoded once per dispatch and checked to round-trip (``model_dump_json`` then
``model_validate_json`` gives an equal event), so a type JSON cannot carry fails in the
caller of ``dispatch``, not later in a worker.
"""

from __future__ import annotations

import json
import math
import uuid
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model
from pydantic_core import PydanticSerializationError

from .._errors import EventBusError, EventNotSerializable, EventTooLarge

if TYPE_CHECKING:
    from .._event import Event

__all__ = [
    "CONTENT_TYPE",
    "FORMAT_VERSION",
    "Envelope",
    "EventNotSerializable",
    "EventTooLarge",
    "PoisonMessage",
    "decode_event",
    "decode_head",
    "encode",
    "event_json",
    "job_id",
]

#: Bumped when the envelope changes incompatibly; workers dead-letter other versions.
FORMAT_VERSION = 1
CONTENT_TYPE = "application/json"
_JOB_NAMESPACE = uuid.UUID("6f1d1a8e-6a58-4d3e-9a4e-2f0c1f6a7b10")


class PoisonMessage(EventBusError):
    """A message a worker cannot run; ``reason`` goes into the dead-letter headers."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def event_json(event: Event) -> bytes:
    """The event's pydantic JSON, after checking it decodes back to an equal event."""
    cls = type(event)
    what = f"cannot send {cls.__qualname__} ({event.event_name!r}) to another process"
    try:
        data = event.model_dump_json().encode()
    except PydanticSerializationError as exc:
        found = _unserializable(event)
        culprit = (
            f"field {found[0]!r} ({type(found[1]).__qualname__}) has no JSON form; pydantic "
            f"cannot serialize it ({exc})"
            if found is not None
            else f"pydantic cannot serialize it to JSON ({exc})"
        )
        raise EventNotSerializable(
            f"{what}: {culprit}. Give the field's type a JSON form, e.g. "
            "Annotated[ObjectId, PlainSerializer(str, when_used='json'), "
            "BeforeValidator(ObjectId)] (see docs/reliability.md)"
        ) from exc
    try:
        back = cls.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(part) for part in first["loc"])
        culprit = (
            f"field {loc!r} ({_type_at(event, first['loc'])}) does not validate back from "
            "its JSON form"
            if loc
            else "its JSON does not validate back into the event"
        )
        raise EventNotSerializable(
            f"{what}: {culprit} ({exc.error_count()} error(s), first: {first['msg']}). Add a "
            "validator that accepts the serialized form, e.g. BeforeValidator(ObjectId) "
            "(see docs/reliability.md)"
        ) from exc
    if back != event:
        changed = [
            name
            for name in cls.model_fields
            if getattr(back, name, None) != getattr(event, name, None)
        ]
        raise EventNotSerializable(
            f"{what}: field(s) {changed} do not survive a JSON round trip unchanged, so a "
            "worker would see different data. Make the type's serializer and validator "
            "inverse (see docs/reliability.md)"
        )
    return data


def _unserializable(model: BaseModel) -> tuple[str, Any] | None:
    """The dotted path and value of the first field pydantic cannot serialize, if one is.

    Only on the error path: each field is serialized alone, and a nested model is searched
    for its own field. ``None`` when no single field fails (a model-level serializer).
    """
    for name in (*type(model).model_fields, *type(model).model_computed_fields):
        try:
            model.model_dump_json(include={name})
        except PydanticSerializationError:
            value = getattr(model, name, None)
            inner = _unserializable(value) if isinstance(value, BaseModel) else None
            return (f"{name}.{inner[0]}", inner[1]) if inner is not None else (name, value)
    return None


def _type_at(event: Event, loc: tuple[int | str, ...]) -> str:
    """The type name of the value at a validation error's ``loc`` in the original event."""
    value: Any = event
    for part in loc:
        try:
            value = value[part] if isinstance(part, int) else getattr(value, part)
        except (AttributeError, IndexError, KeyError, TypeError):
            return "?"
    return type(value).__qualname__


def job_id(event_id: uuid.UUID, listener_name: str) -> str:
    """Stable per (event, listener): retries and redeliveries keep it, for idempotency."""
    return uuid.uuid5(event_id, listener_name).hex


def encode(
    *,
    job: str,
    event_id: str,
    event_name: str,
    listener: str,
    attempt: int,
    dispatched_at: float,
    context: dict[str, Any],
    data: bytes,
) -> bytes:
    """The message body for one job; ``data`` is the event JSON from :func:`event_json`."""
    try:
        head = json.dumps(
            {
                "v": FORMAT_VERSION,
                "job": job,
                "event_id": event_id,
                "event": event_name,
                "listener": listener,
                "attempt": attempt,
                "at": dispatched_at,
                "context": context,
            },
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
        )
    except (TypeError, ValueError) as exc:
        bad = [k for k, v in context.items() if not _jsonable(v)]
        raise EventNotSerializable(
            f"cannot send {event_name!r} to another process: the eventbus.context value(s) of "
            f"{bad or 'some key'} are not JSON ({exc}); context keys that cross processes "
            "must hold str, int, float, bool, None, lists or dicts of those"
        ) from exc
    return head[:-1].encode() + b',"data":' + data + b"}"


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


class Envelope:
    """A decoded job: who runs it, for which event, which attempt, in which context."""

    __slots__ = (
        "attempt",
        "context",
        "dispatched_at",
        "event",
        "event_id",
        "event_name",
        "job_id",
        "listener",
    )

    def __init__(self, head: dict[str, Any]) -> None:
        self.job_id: str = head["job"]
        self.event_id: str = head["event_id"]
        self.event_name: str = head["event"]
        self.listener: str = head["listener"]
        self.attempt: int = head["attempt"]
        self.dispatched_at: float = head["at"]
        self.context: dict[str, Any] = head["context"]
        self.event: Event | None = None

    def __repr__(self) -> str:
        return (
            f"<Envelope job={self.job_id} {self.event_name} -> {self.listener} "
            f"attempt {self.attempt}>"
        )


_HEAD_TYPES: tuple[tuple[str, type | tuple[type, ...]], ...] = (
    ("job", str),
    ("event_id", str),
    ("event", str),
    ("listener", str),
    ("attempt", int),
    ("at", (int, float)),
    ("context", dict),
)


#: AMQP short strings (the message id a retry or dead-letter is published with) hold 255 bytes.
_MAX_ID_BYTES = 255


def _no_constant(name: str) -> Any:
    # The encoder never writes NaN/Infinity (allow_nan=False); accepting them here would
    # only fail later, when a retry re-encodes the envelope.
    raise ValueError(f"{name} is not JSON")


def decode_head(body: bytes) -> tuple[Envelope, dict[str, Any]]:
    """Parse the envelope (not yet the event); raise :class:`PoisonMessage` with a reason."""
    try:
        head = json.loads(body, parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise PoisonMessage(f"undecodable body: not JSON ({_short(exc)})") from None
    except RecursionError:
        raise PoisonMessage("undecodable body: JSON nested too deeply to parse") from None
    if not isinstance(head, dict):
        raise PoisonMessage("undecodable body: not a JSON object")
    version = head.get("v")
    if version != FORMAT_VERSION:
        raise PoisonMessage(f"unsupported envelope version {version!r} (this worker reads 1)")
    for key, kind in _HEAD_TYPES:
        value = head.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise PoisonMessage(f"malformed envelope: {key!r} is {_short(value)}")
    if head["attempt"] < 1:
        raise PoisonMessage(f"malformed envelope: attempt {head['attempt']!r}")
    try:
        finite = math.isfinite(head["at"])
    except OverflowError:  # an int too large for a float
        finite = False
    if not finite:
        raise PoisonMessage(f"malformed envelope: 'at' is {_short(head['at'])}")
    if len(head["job"].encode()) > _MAX_ID_BYTES:
        raise PoisonMessage(f"malformed envelope: 'job' is over {_MAX_ID_BYTES} bytes")
    if "data" not in head:
        raise PoisonMessage("malformed envelope: no 'data'")
    return Envelope(head), head


_adapters: dict[type, type[BaseModel]] = {}


def decode_event(cls: type[Event], body: bytes) -> Event:
    """Validate the envelope's ``data`` as ``cls`` in JSON mode, exactly as it was encoded."""
    model = _adapters.get(cls)
    if model is None:
        model = create_model(
            f"{cls.__name__}Envelope",
            __config__=ConfigDict(extra="ignore"),
            data=(cls, ...),
        )
        _adapters[cls] = model
    try:
        event: Event = model.model_validate_json(body).data  # type: ignore[attr-defined]
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(part) for part in first["loc"][1:]) or "(event)"
        raise PoisonMessage(
            f"schema mismatch for {cls.__qualname__}: {exc.error_count()} error(s), "
            f"first at {loc}: {_short(first['msg'])}"
        ) from None
    except RecursionError:
        raise PoisonMessage(f"schema mismatch for {cls.__qualname__}: nested too deeply") from None
    except Exception as exc:
        # A field validator raising something pydantic does not wrap (it wraps only
        # ValueError and AssertionError), e.g. bson's InvalidId: the data is the problem.
        raise PoisonMessage(
            f"schema mismatch for {cls.__qualname__}: a validator raised "
            f"{type(exc).__qualname__}: {_short(exc)}"
        ) from None
    return event


def _short(value: Any, limit: int = 200) -> str:
    """``repr``/``str`` of message content cut to ``limit`` chars, for reasons and logs."""
    try:
        text = str(value) if isinstance(value, BaseException) else repr(value)
    except RecursionError:
        return f"a deeply nested {type(value).__name__}"
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"
