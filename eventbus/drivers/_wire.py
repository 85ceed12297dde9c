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
import json.encoder
import math
import os
import uuid
from hashlib import sha1
from types import UnionType
from typing import TYPE_CHECKING, Any, Union, get_args, get_origin

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
    "new_event_id",
]

#: Bumped when the envelope changes incompatibly; workers dead-letter other versions.
FORMAT_VERSION = 1
CONTENT_TYPE = "application/json"
_urandom = os.urandom


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
        plan = _exact_plans[cls]
    except KeyError:
        plan = _exact_plans[cls] = _exact_plan(cls)
    if plan is not None and _holds_exact(event, plan):
        return data  # its JSON is exact by construction: the round trip cannot differ
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


# -- the round trip, skipped where it is provably exact ------------------------------------
#
# pydantic's JSON of a plain str, int (within 64 bits: past ~4300 digits it cannot be read
# back), finite float (shortest round-trip repr; NaN/inf become null), bool or None reads
# back as the same value of the same type. So for a class whose fields are only those
# (optionally `| None`), with nothing that can change a value on the way (validators,
# serializers, aliases, Field metadata, computed fields, private attributes, extra fields,
# str_* config transformations), an event whose values have exactly those types (not,
# e.g., a model_construct'ed wrong type) needs no check. Anything else keeps the check.

_NONE = type(None)
_PLAIN: dict[Any, frozenset[type]] = {t: frozenset({t}) for t in (str, int, float, bool)}
_INT_BOUND = 1 << 63
#: model_config keys that cannot change a plain value between dump and validate.
_NEUTRAL_CONFIG = frozenset(
    {
        "frozen",
        "arbitrary_types_allowed",
        "extra",
        "title",
        "json_schema_extra",
        "protected_namespaces",
        "defer_build",
        "validate_assignment",
        "revalidate_instances",
        "validate_default",
        "strict",
        "hide_input_in_errors",
        "use_attribute_docstrings",
    }
)
_Plan = tuple[tuple[str, frozenset[type]], ...]
_exact_plans: dict[type, _Plan | None] = {}


def _exact_plan(cls: type[BaseModel]) -> _Plan | None:
    """(field, allowed value types) for every field if ``cls``'s JSON is exact, else None."""
    config = cls.model_config
    if not _NEUTRAL_CONFIG.issuperset(config) or config.get("extra") == "allow":
        return None
    d = cls.__pydantic_decorators__
    if (
        d.validators
        or d.field_validators
        or d.root_validators
        or d.field_serializers
        or d.model_serializers
        or d.model_validators
        or d.computed_fields
        or cls.__private_attributes__
        or cls.__pydantic_post_init__ is not None
        or getattr(cls, "__pydantic_root_model__", False)
    ):
        return None
    for klass in cls.__mro__:
        if klass is BaseModel:
            break
        if "__get_pydantic_core_schema__" in vars(klass) or "model_dump_json" in vars(klass):
            return None
    plan = []
    for name, field in cls.model_fields.items():
        if (
            field.alias is not None
            or field.validation_alias is not None
            or field.serialization_alias is not None
            or field.metadata
            or field.exclude
            or field.discriminator is not None
            or getattr(field, "exclude_if", None) is not None
        ):
            return None
        types = _plain_types(field.annotation)
        if types is None:
            return None
        plan.append((name, types))
    return tuple(plan)


def _plain_types(annotation: Any) -> frozenset[type] | None:
    try:
        plain = _PLAIN.get(annotation)
    except TypeError:  # an unhashable annotation is not a plain type
        return None
    if plain is not None:
        return plain
    if get_origin(annotation) in (Union, UnionType):
        args = get_args(annotation)
        if len(args) == 2 and _NONE in args:
            other = args[0] if args[1] is _NONE else args[1]
            if other in _PLAIN:
                return _PLAIN[other] | {_NONE}
    return None


def _holds_exact(event: BaseModel, plan: _Plan) -> bool:
    values = event.__dict__
    for name, types in plan:
        value = values[name]
        kind = type(value)
        if kind not in types:
            return False
        if kind is int:
            if not -_INT_BOUND <= value < _INT_BOUND:
                return False
        elif kind is float and not _isfinite(value):
            return False
    return True


def new_event_id() -> bytes:
    """A fresh event id: the 16 bytes of a random uuid4 (``.hex()`` is what travels).

    Bytes, not a ``uuid.UUID``: the object and its pure-Python ``__init__`` cost more than
    the randomness; the value is exactly a uuid4 (version and variant bits set)."""
    raw = bytearray(_urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40
    raw[8] = raw[8] & 0x3F | 0x80
    return bytes(raw)


def job_id(event_id: uuid.UUID | bytes, listener_name: str) -> str:
    """Stable per (event, listener): retries and redeliveries keep it, for idempotency.

    Exactly ``uuid5(event_id, listener_name).hex`` (``event_id`` a ``UUID`` or its 16
    bytes), computed without building ``UUID`` objects."""
    raw = event_id if isinstance(event_id, bytes) else event_id.bytes
    digest = bytearray(sha1(raw + listener_name.encode()).digest()[:16])
    digest[6] = digest[6] & 0x0F | 0x50
    digest[8] = digest[8] & 0x3F | 0x80
    return digest.hex()


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
    """The message body for one job; ``data`` is the event JSON from :func:`event_json`.

    Byte for byte what ``json.dumps`` of the head (spliced with ``data``) gives, but only
    the per-job values are encoded: the event/listener part is cached and an empty context
    is a constant. Anything unusual takes the ``json.dumps`` path below, errors included.
    """
    if (
        type(attempt) is int
        and type(dispatched_at) is float
        and _isfinite(dispatched_at)
        and type(job) is str
        and type(event_id) is str
    ):
        if type(context) is dict and not context:
            ctx: str | None = "{}"
        else:
            try:
                ctx = _dumps(context)
            except (TypeError, ValueError):
                ctx = None  # the json.dumps path below reports it
        if ctx is not None:
            middle = _middles.get((event_name, listener))
            if middle is None:
                middle = _middle(event_name, listener)
            return (
                (
                    f'{{"v":{FORMAT_VERSION},"job":{_quote(job)},"event_id":{_quote(event_id)}'
                    f'{middle}{attempt!r},"at":{dispatched_at!r},"context":{ctx},"data":'
                ).encode()
                + data
                + b"}"
            )
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


#: The encoder json.dumps would build on every call with these options, built once.
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
_quote = json.encoder.encode_basestring  # the ensure_ascii=False string encoder
_isfinite = math.isfinite
#: (event name, listener) -> ``,"event":...,"listener":...,"attempt":``; bounded, as names
#: come from messages on the worker side.
_middles: dict[tuple[str, str], str] = {}
_MAX_MIDDLES = 4096


def _middle(event_name: str, listener: str) -> str:
    middle = f',"event":{_dumps(event_name)},"listener":{_dumps(listener)},"attempt":'
    if len(_middles) < _MAX_MIDDLES:
        _middles[event_name, listener] = middle
    return middle


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
