"""One errors module (issue 11, requirement 6): every exception eventbus defines is an
EventBusError importable from ``eventbus``, old import paths still work, and the wire's
EventNotSerializable names the offending field and no broker."""

from __future__ import annotations

import ast
import importlib
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import pytest
from bson import ObjectId
from pydantic import BaseModel, ConfigDict, PlainSerializer, computed_field

import eventbus
from eventbus import Event, EventBus, EventBusError, EventNotSerializable, _errors
from eventbus.drivers import _wire
from eventbus.drivers.rabbitmq import RabbitMQDriver

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rabbitmq_app.harness import URL_, depth

PACKAGE = Path(eventbus.__file__).resolve().parent

#: Exceptions defined in eventbus that are deliberately not exported from ``eventbus``, and
#: why no caller ever has to catch them. Anything else must be exported.
INTERNAL = {
    "eventbus.drivers._wire.PoisonMessage": (
        "a body no worker can run: the worker turns it into the dead letter's reason"
    ),
    "eventbus.cli.make.InvalidName": "`eventbus make` turns it into a usage error (exit 2)",
    "eventbus.drivers._runner.Unrunnable": (
        "a PoisonMessage whose envelope decoded: also only ever a dead letter's reason"
    ),
}
#: The demo app's own listener errors are app code, not eventbus's.
APP_CODE = ("demo",)

BROKER_WORDS = re.compile(r"rabbit|amqp|broker|aio.?pika", re.IGNORECASE)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _defined_exceptions() -> Iterator[tuple[str, Any]]:
    """``(dotted name, class)`` of every exception class eventbus's source defines.

    Module-level classes are checked by importing their module (only modules that define a
    class with bases are imported: ``eventbus.boot`` would load a provider). A class
    defined inside a function cannot be exported at all, so one that looks like an
    exception by its bases' names is reported with ``None``.
    """
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.relative_to(PACKAGE).parts[0] in APP_CODE:
            continue
        tree = ast.parse(path.read_text(), str(path))
        module_name = _module_name(path)
        top = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.bases]
        if top:
            module = importlib.import_module(module_name)
            for node in top:
                obj = getattr(module, node.name)
                if isinstance(obj, type) and issubclass(obj, BaseException):
                    yield f"{module_name}.{node.name}", obj
        nested = {n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)} - set(tree.body)
        for node in nested:
            bases = [ast.unparse(base) for base in node.bases]
            if any(re.search(r"(Error|Exception)$", base) for base in bases):
                yield f"{module_name}.<nested>.{node.name}({', '.join(bases)})", None


DEFINED = dict(_defined_exceptions())


def test_the_scan_finds_the_exceptions_it_should() -> None:
    # Guards the scan itself: an empty or broken walk would make the tests below pass.
    assert {
        "eventbus._errors.RegistrationError",
        "eventbus._errors.BrokerError",
        "eventbus._errors.WorkerCrashed",
        "eventbus.drivers._wire.PoisonMessage",
    } <= set(DEFINED)
    assert not any(name.startswith("eventbus.demo.") for name in DEFINED)


def test_every_exception_eventbus_defines_is_an_eventbus_error() -> None:
    outside = sorted(
        name for name, cls in DEFINED.items() if cls is None or not issubclass(cls, EventBusError)
    )
    assert outside == [], f"not EventBusError subclasses (define them in _errors.py): {outside}"


def test_every_exception_eventbus_defines_is_importable_from_eventbus() -> None:
    def exported(cls: Any) -> bool:
        name = getattr(cls, "__name__", "")
        return getattr(eventbus, name, None) is cls and name in eventbus.__all__

    missing = sorted(
        name for name, cls in DEFINED.items() if name not in INTERNAL and not exported(cls)
    )
    assert missing == [], f"defined by eventbus but not exported from eventbus: {missing}"
    assert set(INTERNAL) <= set(DEFINED), "INTERNAL names a class that no longer exists"


@pytest.mark.parametrize("name", _errors.__all__)
def test_every_name_of_the_errors_module_is_public_and_drawn_in_its_hierarchy(name: str) -> None:
    cls = getattr(_errors, name)
    assert issubclass(cls, EventBusError)
    assert getattr(eventbus, name) is cls and name in eventbus.__all__
    assert cls.__module__ == "eventbus"  # shown where users import it from
    assert re.search(rf"\b{name}\b", _errors.__doc__ or ""), f"{name} is not in the docstring"


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("eventbus.worker", "WorkerCrashed"),
        ("eventbus.worker", "JobKilledWorker"),
        ("eventbus.drivers.rabbitmq", "BrokerError"),
        ("eventbus.drivers._wire", "EventNotSerializable"),
        ("eventbus.drivers._wire", "EventTooLarge"),
        ("eventbus._provider", "ProviderNotFound"),
        ("eventbus._listener", "RegistrationError"),
        ("eventbus._annotations", "UnresolvedAnnotation"),
    ],
)
def test_old_import_paths_give_the_same_classes(module: str, name: str) -> None:
    assert getattr(importlib.import_module(module), name) is getattr(eventbus, name)


def test_an_annotation_that_never_resolves_raises_an_exported_registration_error() -> None:
    async def on_it(event: NoSuchEventAnywhere) -> None:  # type: ignore[name-defined]  # noqa: F821
        pass

    bus = EventBus(driver="sync")
    bus.listen(on_it)  # kept pending: the name may be importable later
    with pytest.raises(eventbus.UnresolvedAnnotation, match="NoSuchEventAnywhere") as caught:
        bus.listeners_for(Event)
    assert isinstance(caught.value, eventbus.RegistrationError)


# -- EventNotSerializable names the field -------------------------------------------------------


class Opaque:
    def __init__(self, value: int) -> None:
        self.value = value


class RawId(Event):
    title: str = ""
    chat_id: ObjectId


class Meta(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    source: str = "web"
    owner: ObjectId


class Nested(Event):
    meta: Meta


class Computed(Event):
    n: int = 1

    @computed_field  # type: ignore[prop-decorator]
    @property
    def handle(self) -> Opaque:
        return Opaque(self.n)


class Lossy(Event):
    ratio: Annotated[float, PlainSerializer(lambda v: round(v, 1), when_used="json")]


class Meta2(Event):
    source: str = "web"


class HalfWay(Event):
    # serialized as a str, but nothing turns the str back into an ObjectId
    chat_id: Annotated[ObjectId, PlainSerializer(str, when_used="json")]


def _refusal(event: Event) -> str:
    with pytest.raises(EventNotSerializable) as caught:
        _wire.event_json(event)
    return str(caught.value)


@pytest.mark.parametrize(
    ("event", "field", "kind"),
    [
        (RawId(chat_id=ObjectId()), "chat_id", "ObjectId"),
        (Nested(meta=Meta(owner=ObjectId())), "meta.owner", "ObjectId"),
        (Computed(), "handle", "Opaque"),
    ],
    ids=["field", "nested-model-field", "computed-field"],
)
def test_a_field_with_no_json_form_is_named_with_its_type(
    event: Event, field: str, kind: str
) -> None:
    message = _refusal(event)
    assert f"field '{field}' ({kind}) has no JSON form" in message
    assert f"cannot send {type(event).__qualname__} ('{event.event_name}')" in message
    assert "PlainSerializer" in message  # says what to do


def test_a_field_whose_json_does_not_validate_back_is_named_with_its_type() -> None:
    message = _refusal(HalfWay(chat_id=ObjectId()))
    assert "field 'chat_id' (ObjectId) does not validate back from its JSON form" in message
    assert "BeforeValidator" in message


def test_the_wire_messages_name_no_broker() -> None:
    messages = [
        _refusal(RawId(chat_id=ObjectId())),
        _refusal(HalfWay(chat_id=ObjectId())),
        _refusal(Lossy(ratio=0.25)),
    ]
    with pytest.raises(EventNotSerializable) as caught:
        _wire.encode(
            job="j",
            event_id="e",
            event_name="raw_id",
            listener="app.L",
            attempt=1,
            dispatched_at=1.0,
            context={"when": object()},
            data=b"{}",
        )
    messages.append(str(caught.value))
    for message in messages:
        assert "to another process" in message
        assert not BROKER_WORDS.search(message), message


@pytest.mark.rabbitmq
async def noop(event: Event) -> None:
    """At module level: a rabbitmq worker finds listeners by module.qualname."""


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_dispatch_on_rabbitmq_refuses_naming_the_field_and_queues_nothing(
    queue: str,
) -> None:
    bus = EventBus({RawId: [noop], Meta2: [noop]}, driver=RabbitMQDriver(URL_, queue=queue))
    async with bus:
        with pytest.raises(EventNotSerializable, match=r"field 'chat_id' \(ObjectId\)"):
            await bus.dispatch(RawId(chat_id=ObjectId()))
        await bus.dispatch(Meta2())  # the bus goes on: a sendable event is queued
    assert await depth(queue) == (1, 0)
