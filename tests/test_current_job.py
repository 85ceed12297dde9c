"""Issue 11 #4: ``eventbus.current_job()`` while a listener runs on the farm and sync drivers.

``.id`` is stable for one event x listener across retries and distinct per listener,
``.event_id`` is shared by the jobs of one dispatch, ``.attempt`` counts, and the job is
visible in ``failed()``; ``None`` outside a listener run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

import eventbus
from eventbus import Event, EventBus, EventListener

pytestmark = pytest.mark.anyio

Seen = tuple[str, str, int, str, str]  # id, event_id, attempt, listener, event_name


class Order(Event):
    n: int


def _seen() -> Seen:
    job = eventbus.current_job()
    assert job is not None, "current_job() is None inside a listener"
    return (job.id, job.event_id, job.attempt, job.listener, job.event_name)


@asynccontextmanager
async def _running(kind: str) -> AsyncIterator[tuple[EventBus, Callable[[Event], Awaitable[Any]]]]:
    if kind == "sync":
        bus = EventBus(driver="sync")
        yield bus, bus.dispatch
        return
    bus = EventBus(driver="async_farm")
    async with bus:

        async def send(event: Event) -> None:
            await bus.dispatch(event)
            await bus.join()

        yield bus, send


@pytest.mark.parametrize("kind", ["async_farm", "sync"])
async def test_same_id_across_retries_and_visible_in_failed(kind: str) -> None:
    seen: list[Seen] = []
    in_failed: list[Seen] = []

    class Flaky(EventListener):
        tries = 3
        backoff = 0

        async def handle(self, event: Order) -> None:
            seen.append(_seen())
            raise RuntimeError("always")

        async def failed(self, event: Order, exc: BaseException) -> None:
            in_failed.append(_seen())

    async with _running(kind) as (bus, send):
        bus.listen(Order)(Flaky)
        await send(Order(n=1))
        assert [s[2] for s in seen] == [1, 2, 3]
        assert len({s[0] for s in seen}) == 1, seen  # one id across the retries
        assert len({s[1] for s in seen}) == 1, seen
        assert seen[0][3] == eventbus._names.qualified_name(Flaky)
        assert seen[0][4] == Order.event_name
        assert in_failed == [seen[-1]]
        await send(Order(n=2))
        assert seen[3][0] != seen[0][0] and seen[3][1] != seen[0][1]  # a new dispatch
    assert bus.stats.failed == 2 and bus.stats.retried == 4
    assert eventbus.current_job() is None


@pytest.mark.parametrize("kind", ["async_farm", "sync"])
async def test_distinct_per_listener_shared_event_id_none_outside(kind: str) -> None:
    seen: dict[str, Seen] = {}
    bus = EventBus(driver=kind)

    @bus.listen(Order)
    async def first(event: Order) -> None:
        seen["first"] = _seen()

    @bus.listen(Order)
    def second(event: Order) -> None:  # a thread listener: the job crosses into the thread
        seen["second"] = _seen()

    @bus.listen(Order)
    async def third(event: Order) -> None:
        seen["third"] = _seen()

    assert eventbus.current_job() is None
    if kind == "sync":
        await bus.dispatch(Order(n=1))
    else:
        async with bus:
            await bus.dispatch(Order(n=1))
            await bus.join()
    assert eventbus.current_job() is None
    assert set(seen) == {"first", "second", "third"}
    assert len({s[0] for s in seen.values()}) == 3, seen  # one id per listener
    assert len({s[1] for s in seen.values()}) == 1, seen  # one event id for the dispatch
    assert {s[3] for s in seen.values()} == {
        eventbus._names.qualified_name(f) for f in (first, second, third)
    }
    assert all(s[2] == 1 for s in seen.values())


async def test_a_follow_up_gets_its_own_job() -> None:
    """A listener's dispatch copies its context: the follow-up must not see the parent job."""
    seen: dict[str, Seen] = {}

    class Shipped(Event):
        n: int

    bus = EventBus()

    @bus.listen(Order)
    async def parent(event: Order) -> None:
        seen["parent"] = _seen()
        await bus.dispatch(Shipped(n=event.n))

    @bus.listen(Shipped)
    async def child(event: Shipped) -> None:
        seen["child"] = _seen()

    async with bus:
        await bus.dispatch(Order(n=1))
        await bus.join()
    assert seen["child"][0] != seen["parent"][0]
    assert seen["child"][1] != seen["parent"][1]
    assert seen["child"][4] == Shipped.event_name


def test_importable_from_eventbus_without_aio_pika() -> None:
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['aio_pika'] = None; import eventbus; "
        "assert eventbus.current_job() is None and isinstance(eventbus.Job, type)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
