"""The producer's fast paths in the wire format give exactly what the slow paths gave.

job ids are still uuid5(event id, listener); ``encode`` is byte-equal to ``json.dumps`` of
the head; ``event_json`` skips its round-trip check only where the JSON is provably exact
and still refuses every value that would not survive the trip.
"""

from __future__ import annotations

import json
import math
import random
import struct
import uuid
from typing import Optional

import pytest
from pydantic import ConfigDict, field_validator

from eventbus import Event, EventNotSerializable
from eventbus.drivers import _wire


def test_job_id_is_uuid5_of_the_event_id_from_bytes_or_uuid() -> None:
    for _ in range(200):
        raw = _wire.new_event_id()
        event = uuid.UUID(bytes=raw)
        assert event.version == 4 and event.variant == uuid.RFC_4122
        for name in ("app.L", "app.listeners.Ünïcode", ""):
            expected = uuid.uuid5(event, name).hex
            assert _wire.job_id(raw, name) == _wire.job_id(event, name) == expected
    assert _wire.new_event_id() != _wire.new_event_id()


def _reference(**f: object) -> bytes:
    head = json.dumps(
        {
            "v": 1,
            "job": f["job"],
            "event_id": f["event_id"],
            "event": f["event_name"],
            "listener": f["listener"],
            "attempt": f["attempt"],
            "at": f["dispatched_at"],
            "context": f["context"],
        },
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
    data = f["data"]
    assert isinstance(data, bytes)
    return head[:-1].encode() + b',"data":' + data + b"}"


@pytest.mark.parametrize(
    "fields",
    [
        {"job": "a" * 32, "event_id": "b" * 32, "event_name": "tick", "listener": "m.on_tick",
         "attempt": 1, "dispatched_at": 1718000000.25, "context": {}, "data": b'{"n":1}'},
        {"job": 'q"\\\u00e9\u2028\x00', "event_id": "x", "event_name": '\u00fc"\n',
         "listener": "l\t", "attempt": 7, "dispatched_at": 1e300,
         "context": {"a": [1, 2.5, None, "\u00fc"], "b": {"c": True}}, "data": b"{}"},
        {"job": "j", "event_id": "e", "event_name": "n", "listener": "l", "attempt": 2,
         "dispatched_at": 12, "context": {}, "data": b"{}"},
        {"job": "j", "event_id": "e", "event_name": "n", "listener": "l", "attempt": 3,
         "dispatched_at": -0.0, "context": {"k": 1e-7}, "data": b"[]"},
    ],
)  # fmt: skip
def test_encode_is_byte_equal_to_json_dumps(fields: dict[str, object]) -> None:
    assert _wire.encode(**fields) == _reference(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [{"k": object()}, {"k": math.nan}, {"k": math.inf}])
def test_encode_still_refuses_a_non_json_context(bad: dict[str, object]) -> None:
    with pytest.raises(EventNotSerializable, match="'k'"):
        _wire.encode(
            job="j", event_id="e", event_name="n", listener="l", attempt=1,
            dispatched_at=1.0, context=bad, data=b"{}",
        )  # fmt: skip


class Plain(Event):
    s: str = ""
    i: int = 0
    f: float = 0.0
    b: bool = False
    o: Optional[int] = None  # noqa: UP045 - typing.Optional is a different annotation object
    u: str | None = None


class Shouting(Event):
    s: str

    @field_validator("s")
    @classmethod
    def _louder(cls, value: str) -> str:
        return value + "!"


class Stripped(Event):
    model_config = ConfigDict(str_strip_whitespace=True)
    s: str


def test_exact_classes_give_pydantics_json_and_it_reads_back_equal() -> None:
    rng = random.Random(11)
    floats = [struct.unpack("<d", rng.randbytes(8))[0] for _ in range(3000)]
    for value in [x for x in floats if math.isfinite(x)] + [-0.0, 5e-324, 1.7976931348623157e308]:
        event = Plain(f=value, i=rng.randrange(-(2**63), 2**63), s="\x00\u00e9\u2028", o=3)
        data = _wire.event_json(event)
        assert data == event.model_dump_json().encode()
        assert Plain.model_validate_json(data) == event


@pytest.mark.parametrize(
    "event",
    [
        Plain(f=math.nan),
        Plain(f=-math.inf),
        Plain(i=10**5000),  # pydantic writes it but cannot read it back
        Plain.model_construct(i="not an int"),  # unvalidated: the value is not the field's type
        Shouting(s="hi"),  # a validator that is not idempotent
        Stripped.model_construct(s=" padded "),  # a str_* config transformation
    ],
    ids=["nan", "inf", "huge-int", "wrong-type", "validator", "str-config"],
)
# pydantic warns while dumping the model_construct'ed wrong type: that is the point.
@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings:UserWarning")
def test_what_does_not_survive_the_trip_is_still_refused(event: Event) -> None:
    with pytest.raises(EventNotSerializable):
        _wire.event_json(event)
