"""The rabbitmq driver in one process: publishing, wire format, errors, the queue CLI.

Broker tests are asyncio-only (aio-pika); the trio test checks the driver refuses trio.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import aio_pika
import anyio
import pytest
from bson import ObjectId
from pydantic import PlainSerializer

from eventbus import Event, EventBus, EventListener, FarmNotRunning, RegistrationError, context
from eventbus.drivers import _wire
from eventbus.drivers.rabbitmq import BrokerError, RabbitMQDriver
from eventbus.worker import Worker, current_job

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rabbitmq_app.event_provider import events as app_events
from rabbitmq_app.events import ChatOpened, Numbered
from rabbitmq_app.harness import URL_, depth, drain, envelope
from rabbitmq_app.listeners import UserId

pytestmark = [pytest.mark.anyio, pytest.mark.rabbitmq]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Blob(Event):
    payload: str


class Opaque:
    def __init__(self, value: int) -> None:
        self.value = value


class HoldsOpaque(Event):
    thing: Opaque


class Lossy(Event):
    ratio: Annotated[float, PlainSerializer(lambda v: round(v, 1), when_used="json")]


async def noop(event: Event) -> None:
    pass


# Listeners at module level: a wire driver refuses listeners defined inside a function.
_seen: list[tuple[Any, str | None, int]] = []
_done: list[anyio.Event] = []


class Collect(EventListener):
    async def handle(self, event: ChatOpened) -> None:
        job = current_job()
        assert job is not None
        _seen.append((event.chat_id, context.get(UserId), job.attempt))
        _done[-1].set()


class Greet(EventListener):
    async def handle(self, event: Numbered) -> None:
        _done[-1].set()


async def twin(event: Numbered) -> None:
    pass


_first_twin = twin


async def twin(event: Numbered) -> None:
    pass


def bus_for(queue: str, events: Any = None, **options: Any) -> EventBus:
    return EventBus(events, driver=RabbitMQDriver(URL_, queue=queue, **options))


# -- no broker needed -----------------------------------------------------------------------


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_refuses_trio_at_bus_creation_and_on_enter() -> None:
    with pytest.raises(RuntimeError, match=r"needs asyncio.*runs under trio"):
        EventBus(driver="rabbitmq")
    # A driver made outside any loop (skipping __init__'s check) still refuses trio on enter.
    driver = RabbitMQDriver.__new__(RabbitMQDriver)
    with pytest.raises(RuntimeError, match="needs asyncio"):
        async with driver.running():
            pass


def test_driver_by_name_reads_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUEUE_DRIVER", "rabbitmq")
    monkeypatch.setenv("RABBITMQ_URL", "amqp://u:secret@broker:5672/")
    monkeypatch.setenv("EVENTBUS_QUEUE", "orders")
    bus = EventBus()
    assert isinstance(bus.driver, RabbitMQDriver)
    assert bus.driver.describe()["url"] == "amqp://u:***@broker:5672/"
    assert bus.driver.queue == "orders"


def test_two_event_classes_sharing_a_name_are_rejected_naming_both() -> None:
    class First(Event):
        event_name = "shared"

    class Second(Event):
        event_name = "shared"

    bus = EventBus(driver=RabbitMQDriver())
    bus.listen(First)(noop)
    with pytest.raises(RegistrationError, match=r"Second.*First.*'shared'"):
        bus.listen(Second)(noop)
    # the in-process drivers allow it (decision in the brief)
    EventBus({First: [noop], Second: [noop]}, driver="sync")


def test_two_listeners_with_one_name_are_rejected() -> None:
    bus = EventBus(driver=RabbitMQDriver())
    bus.listen(Numbered)(_first_twin)
    with pytest.raises(
        RegistrationError, match=r"two listeners are named .*test_rabbitmq_driver\.twin'"
    ):
        bus.listen(Numbered)(twin)


async def test_dispatch_without_connection_raises_and_says_how() -> None:
    bus = EventBus(app_events, driver=RabbitMQDriver())
    with pytest.raises(FarmNotRunning, match="async with bus"):
        await bus.dispatch(Numbered(n=1))


async def test_unreachable_broker_fails_clearly_on_enter() -> None:
    bus = EventBus(driver=RabbitMQDriver("amqp://guest:pw@127.0.0.1:1/", connect_timeout=3))
    with anyio.fail_after(10), pytest.raises(BrokerError, match=r"cannot connect.*127.0.0.1:1"):
        async with bus:
            pass


def test_events_that_do_not_round_trip_json_are_refused() -> None:
    with pytest.raises(_wire.EventNotSerializable, match=r"HoldsOpaque.*cannot serialize"):
        _wire.event_json(HoldsOpaque(thing=Opaque(1)))
    with pytest.raises(_wire.EventNotSerializable, match=r"\['ratio'\] do not survive"):
        _wire.event_json(Lossy(ratio=0.25))

    class RawObjectId(Event):
        oid: ObjectId

    with pytest.raises(_wire.EventNotSerializable, match="RawObjectId"):
        _wire.event_json(RawObjectId(oid=ObjectId()))
    oid = ObjectId()
    data = _wire.event_json(ChatOpened(chat_id=oid, title="t"))
    assert ChatOpened.model_validate_json(data).chat_id == oid


def test_envelope_is_versioned_json_with_every_field() -> None:
    import json
    import uuid

    event_id = uuid.uuid4()
    job = _wire.job_id(event_id, "app.L")
    assert job == _wire.job_id(event_id, "app.L") != _wire.job_id(event_id, "app.M")
    body = _wire.encode(
        job=job,
        event_id=event_id.hex,
        event_name="numbered",
        listener="app.L",
        attempt=2,
        dispatched_at=12.5,
        context={"user_id": "u1"},
        data=b'{"n":3}',
    )
    assert json.loads(body) == {
        "v": 1,
        "job": job,
        "event_id": event_id.hex,
        "event": "numbered",
        "listener": "app.L",
        "attempt": 2,
        "at": 12.5,
        "context": {"user_id": "u1"},
        "data": {"n": 3},
    }
    envelope, _ = _wire.decode_head(body)
    assert (envelope.attempt, envelope.context) == (2, {"user_id": "u1"})
    assert _wire.decode_event(Numbered, body) == Numbered(n=3)
    for bad, reason in [
        (b"\xff\x00", "undecodable"),
        (b"[1]", "not a JSON object"),
        (body.replace(b'"v":1', b'"v":9'), "unsupported envelope version 9"),
        (body.replace(b'"attempt":2', b'"attempt":"2"'), "'attempt'"),
    ]:
        with pytest.raises(_wire.PoisonMessage, match=reason):
            _wire.decode_head(bad)
    with pytest.raises(_wire.PoisonMessage, match=r"schema mismatch for Numbered.*first at n"):
        _wire.decode_event(Numbered, body.replace(b'{"n":3}', b'{"n":"three"}'))


def test_context_values_must_be_json() -> None:
    with pytest.raises(_wire.EventNotSerializable, match=r"context value\(s\) of \['when'\]"):
        envelope(context={"when": object()})


# -- against the broker -----------------------------------------------------------------------


async def test_over_size_event_raises_before_publishing(queue: str) -> None:
    bus = bus_for(queue, {Blob: [noop], Lossy: [noop]})
    async with bus:
        await bus.dispatch(Blob(payload="x" * 1000))
        with pytest.raises(_wire.EventTooLarge, match=r"over max_message_size=1048576"):
            await bus.dispatch(Blob(payload="x" * (1024 * 1024)))
        with pytest.raises(_wire.EventNotSerializable):
            await bus.dispatch(Lossy(ratio=0.25))
    ready, _ = await depth(queue)
    print(f"\nover-size: dispatch raised EventTooLarge; {ready} message queued (the small one)")
    assert ready == 1


async def test_dispatch_returns_after_confirm_and_unroutable_raises(queue: str) -> None:
    bus = bus_for(queue, app_events)
    async with bus:
        await bus.dispatch(Numbered(n=1))
        assert (await depth(queue))[0] == 1  # confirmed means queued
        connection = await aio_pika.connect(URL_)
        async with connection:
            channel = await connection.channel()
            await channel.queue_delete(queue)
        with anyio.fail_after(10), pytest.raises(BrokerError, match="could not route"):
            await bus.dispatch(Numbered(n=2))


async def test_worker_in_process_runs_jobs_with_context_and_object_id(queue: str) -> None:
    seen = _seen
    seen.clear()
    done = anyio.Event()
    _done.append(done)
    producer = bus_for(queue, {ChatOpened: [Collect]})
    oid = ObjectId()
    async with producer:
        context.set(UserId, "ada")
        await producer.dispatch(ChatOpened(chat_id=oid, title="hello"))
    consumer = bus_for(queue, {ChatOpened: [Collect]})
    worker = Worker(consumer, concurrency=2)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    with anyio.fail_after(15):
        await done.wait()
    stop.set()
    report = await task
    assert seen == [(oid, "ada", 1)] and isinstance(seen[0][0], ObjectId)
    assert report.succeeded == 1 and consumer.stats.succeeded == 1


async def test_worker_log_records_carry_event_listener_and_attempt(
    queue: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="eventbus")
    done = anyio.Event()
    _done.append(done)
    unknown_listener = envelope(listener="os.system", attempt=2)
    producer = bus_for(queue, {Numbered: [Greet]})
    async with producer:
        channel = await producer.driver.connection.channel()  # type: ignore[attr-defined]
        for body, kind in ((b"not json", "garbage"), (unknown_listener, "unknown-listener")):
            await channel.default_exchange.publish(aio_pika.Message(body, message_id=kind), queue)
        await producer.dispatch(Numbered(n=1))
    # One runner takes the messages in queue order: the poison is handled before Greet runs.
    worker = Worker(bus_for(queue, {Numbered: [Greet]}), concurrency=1, verbose=True)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    with anyio.fail_after(15):
        await done.wait()
    stop.set()
    assert (await task).dead_lettered == 2
    records = [r for r in caplog.records if r.name == "eventbus"]
    formatter = logging.Formatter("%(event_name)s %(listener)s %(attempt)s %(message)s")
    lines = [formatter.format(r) for r in records]  # raises if a record lacks a field
    assert any(line.startswith("None None None dead-lettering message garbage") for line in lines)
    assert any(
        line.startswith("numbered os.system 2 dead-lettering message unknown-listener")
        for line in lines
    )
    ran = [r for r in records if r.getMessage().startswith("ran ")]
    assert [(r.event_name, r.listener.endswith("Greet"), r.attempt) for r in ran] == [  # type: ignore[attr-defined]
        ("numbered", True, 1)
    ]
    assert any(r.getMessage().startswith("eventbus worker stopped") for r in records)


def test_queue_cli_stats_and_replay_dead(queue: str, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from eventbus.cli import main

    async def setup() -> None:
        bus = bus_for(queue, app_events)
        async with bus:
            channel = await bus.driver.connection.channel()  # type: ignore[attr-defined]
            for n in range(3):
                body = envelope(job=f"j{n}", attempt=3, data=b'{"n":%d}' % n)
                await channel.default_exchange.publish(
                    aio_pika.Message(body, message_id=f"j{n}"), f"{queue}.dead"
                )
            await bus.dispatch(Numbered(n=9))

    asyncio.run(setup())
    assert main(["queue", "stats", "--queue", queue, "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["work"]["messages"] == 1 and stats["dead"]["messages"] == 3
    assert main(["queue", "replay-dead", "--queue", queue, "--limit", "2"]) == 0
    assert "replayed 2" in capsys.readouterr().out
    assert main(["queue", "stats", "--queue", queue]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"queue {queue}: 3 ready, 0 consumer(s)",
        f"dead-lettered ({queue}.dead): 1",
        f"poison ({queue}.poison): 0",
        "waiting to retry: 0",
    ]
    queued = asyncio.run(drain(queue))
    attempts = {m.message_id: _wire.decode_head(m.body)[0].attempt for m in queued}
    # The dispatched one, and the two oldest dead letters replayed with their attempt reset.
    assert len(attempts) == 3 and {"j0", "j1"} <= set(attempts)
    assert set(attempts.values()) == {1}
    assert [m.message_id for m in asyncio.run(drain(f"{queue}.dead"))] == ["j2"]


def test_importing_eventbus_does_not_load_the_rabbitmq_extra() -> None:
    """aio-pika is an optional extra: ``import eventbus`` must work without it."""
    code = (
        "import sys, eventbus, eventbus.testing\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('aio_pika', 'aiormq')"
        " or m == 'eventbus.drivers.rabbitmq'))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
