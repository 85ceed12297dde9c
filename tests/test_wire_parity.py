"""The memory driver refuses what RabbitMQ refuses, at the same point, with the same error;
``current_job()`` keeps its id across retries and redeliveries on both.

The table runs on asyncio (aio-pika); tests/test_memory_driver.py covers memory on trio.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import pytest

from eventbus import (
    Event,
    EventBus,
    EventListener,
    EventNotSerializable,
    RegistrationError,
    context,
    current_job,
    define_key,
)
from eventbus.drivers.memory import MemoryDriver

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rabbitmq_app.harness import URL_

pytestmark = pytest.mark.anyio

When = define_key[Any]("parity_when")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Opaque:
    pass


class HoldsOpaque(Event):
    thing: Opaque


class Tick(Event):
    n: int


class ShareA(Event):
    event_name = "parity_shared"


class ShareB(Event):
    event_name = "parity_shared"


async def on_any(event: Event) -> None:
    pass


async def twin(event: Tick) -> None:
    pass


first_twin = twin


async def twin(event: Tick) -> None:  # a second listener of the same module.qualname
    pass


def make_driver(kind: str, queue: str) -> Any:
    if kind == "memory":
        return MemoryDriver()
    from eventbus.drivers.rabbitmq import RabbitMQDriver

    return RabbitMQDriver(URL_, queue=queue)


async def send_opaque(bus: EventBus) -> None:
    await bus.dispatch(HoldsOpaque(thing=Opaque()))


async def send_bad_context(bus: EventBus) -> None:
    context.set(When, object())
    await bus.dispatch(Tick(n=1))


def register_local(bus: EventBus) -> None:
    async def local(event: Tick) -> None:
        pass

    bus.listen(Tick)(local)


def register_twins(bus: EventBus) -> None:
    bus.listen(Tick)(first_twin)
    bus.listen(Tick)(twin)


def register_shared_names(bus: EventBus) -> None:
    bus.listen(ShareA)(on_any)
    bus.listen(ShareB)(on_any)


DISPATCH: dict[str, tuple[Callable[[EventBus], Awaitable[None]], type[Exception]]] = {
    "event field with no JSON form": (send_opaque, EventNotSerializable),
    "context value that is not JSON": (send_bad_context, EventNotSerializable),
}
REGISTER: dict[str, Callable[[EventBus], None]] = {
    "listener defined in a function": register_local,
    "two listeners with one name": register_twins,
    "two event classes with one event_name": register_shared_names,
}


def _neutral(message: str, bus: EventBus) -> str:
    return (
        message.replace(repr(bus), "<bus>")
        .replace("rabbitmq", "<driver>")
        .replace("memory", "<driver>")
    )


@pytest.mark.parametrize("case", list(DISPATCH))
async def test_dispatch_refuses_what_cannot_travel_the_same_way(case: str, queue: str) -> None:
    send, error = DISPATCH[case]
    messages = []
    for kind in ("memory", "rabbitmq"):
        bus = EventBus({HoldsOpaque: [on_any], Tick: [on_any]}, driver=make_driver(kind, queue))
        async with bus:
            with pytest.raises(error) as caught:
                await send(bus)
        assert bus.stats.dispatched == 0, kind
        messages.append(_neutral(str(caught.value), bus))
    assert messages[0] == messages[1]


@pytest.mark.parametrize("case", list(REGISTER))
def test_registration_refuses_what_a_worker_could_not_find_the_same_way(case: str) -> None:
    messages = []
    for kind in ("memory", "rabbitmq"):
        bus = EventBus(driver=make_driver(kind, "unused"))
        with pytest.raises(RegistrationError) as caught:
            REGISTER[case](bus)
        messages.append(_neutral(str(caught.value), bus))
    assert messages[0] == messages[1]


# -- current_job() across retries and redeliveries --------------------------------------------

runs: list[tuple[str, int, bool]] = []
holding: list[anyio.Event] = []


class FailsTwice(EventListener):
    tries = 3
    backoff = 0.0

    async def handle(self, event: Tick) -> None:
        job = current_job()
        assert job is not None
        runs.append((job.id, job.attempt, job.redelivered))
        if job.attempt < 3:
            raise ValueError("not yet")


class HoldsFirstDelivery(EventListener):
    async def handle(self, event: Tick) -> None:
        job = current_job()
        assert job is not None
        runs.append((job.id, job.attempt, job.redelivered))
        if len(runs) == 1:
            holding[-1].set()
            await anyio.sleep_forever()  # the worker stops holding it: the broker redelivers


@pytest.mark.parametrize("kind", ["memory", "rabbitmq"])
async def test_current_job_id_is_stable_across_retries(kind: str, queue: str) -> None:
    runs.clear()
    bus = EventBus({Tick: [FailsTwice]}, driver=make_driver(kind, queue))
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(bus)
        await bus.dispatch(Tick(n=1))
        if kind == "memory":
            await bus.join()
        else:
            from eventbus.worker import Worker

            consumer = EventBus({Tick: [FailsTwice]}, driver=make_driver(kind, queue))
            worker = Worker(consumer, concurrency=1)
            stop = asyncio.Event()
            task = asyncio.create_task(worker.run(stop))
            with anyio.fail_after(30):
                while len(runs) < 3:
                    await asyncio.sleep(0.01)
            stop.set()
            await task
    assert [attempt for _, attempt, _ in runs] == [1, 2, 3]
    assert len({job_id for job_id, _, _ in runs}) == 1


async def test_current_job_id_is_stable_across_a_rabbitmq_redelivery(queue: str) -> None:
    from eventbus.worker import Worker

    runs.clear()
    holding.append(anyio.Event())
    producer = EventBus({Tick: [HoldsFirstDelivery]}, driver=make_driver("rabbitmq", queue))
    async with producer:
        await producer.dispatch(Tick(n=1))
    first = Worker(EventBus({Tick: [HoldsFirstDelivery]}, driver=make_driver("rabbitmq", queue)))
    first.grace = 0.0
    stop = asyncio.Event()
    task = asyncio.create_task(first.run(stop))
    with anyio.fail_after(30):
        await holding[-1].wait()
    stop.set()
    assert (await task).requeued == 1  # left unacked: the broker redelivers it
    second = Worker(EventBus({Tick: [HoldsFirstDelivery]}, driver=make_driver("rabbitmq", queue)))
    stop = asyncio.Event()
    task = asyncio.create_task(second.run(stop))
    with anyio.fail_after(30):
        while len(runs) < 2:
            await asyncio.sleep(0.01)
    stop.set()
    assert (await task).succeeded == 1
    (id1, attempt1, redelivered1), (id2, attempt2, redelivered2) = runs
    assert id1 == id2 and (attempt1, attempt2) == (1, 1)
    assert (redelivered1, redelivered2) == (False, True)
