"""Requirement 7: bus.stats is exact: events dispatched, job gauges, final job states."""

from __future__ import annotations

import logging

import anyio
import pytest
from fixtures_core.gate import gated_listener

from eventbus import Event, EventBus, FarmNotRunning, QueueFull, Stats

pytestmark = pytest.mark.anyio


class Order(Event):
    n: int = 0


class Unheard(Event):
    pass


def test_a_new_bus_starts_at_zero() -> None:
    stats = EventBus().stats
    assert isinstance(stats, Stats)
    assert stats.as_dict() == {
        "dispatched": 0,
        "queued": 0,
        "running": 0,
        "succeeded": 0,
        "failed": 0,
        "retried": 0,
        "dropped": 0,
    }
    assert repr(stats).startswith("Stats(dispatched=0, queued=0")


async def test_gauges_follow_jobs_through_the_farm() -> None:
    bus = EventBus(max_concurrency=2, drain_timeout=1)
    gate = anyio.Event()
    both_running = anyio.Event()
    running = 0

    @bus.listen(Order)
    async def first(event: Order) -> None:
        nonlocal running
        running += 1
        if running == 2:
            both_running.set()
        await gate.wait()

    @bus.listen(Order)
    async def second(event: Order) -> None:
        await first(event)

    with anyio.fail_after(5):
        async with bus:
            for n in range(3):
                await bus.dispatch(Order(n=n))
            s = bus.stats
            assert (s.dispatched, s.queued, s.running) == (3, 6, 0)  # events vs jobs
            await both_running.wait()
            await anyio.wait_all_tasks_blocked()
            assert (s.queued, s.running) == (4, 2)
            gate.set()
            await bus.join()
            assert (s.queued, s.running, s.succeeded) == (0, 0, 6)


async def test_final_states_and_retries_are_counted_per_job(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.CRITICAL, logger="eventbus")
    bus = EventBus(drain_timeout=0.05)
    attempts: dict[int, int] = {}
    hanging = anyio.Event()

    @bus.listen(Order, tries=2)
    async def mixed(event: Order) -> None:
        attempts[event.n] = attempts.get(event.n, 0) + 1
        if event.n == 0:
            raise RuntimeError("always")  # 2 attempts, then failed
        if event.n == 1 and attempts[1] == 1:
            raise RuntimeError("once")  # retried, then succeeded
        if event.n == 2:
            hanging.set()
            await anyio.sleep_forever()  # dropped at the drain deadline

    with anyio.fail_after(5):
        async with bus:
            for n in (0, 1, 3):
                await bus.dispatch(Order(n=n))
            await bus.dispatch(Unheard())  # counted as dispatched, no jobs
            await bus.join()  # settled before the short drain deadline can cut them off
            await bus.dispatch(Order(n=2))
            await hanging.wait()
    s = bus.stats
    assert s.as_dict() == {
        "dispatched": 5,
        "queued": 0,
        "running": 0,
        "succeeded": 2,
        "failed": 1,
        "retried": 2,
        "dropped": 1,
    }


async def test_refused_dispatches_are_not_counted() -> None:
    bus = EventBus(max_concurrency=1, max_queue=1, on_full="raise")
    gate, started, _ = gated_listener(bus, Order)

    with pytest.raises(FarmNotRunning, match="not running"):
        await bus.dispatch(Order())
    assert bus.stats.dispatched == 0
    with anyio.fail_after(5):
        async with bus:
            await bus.dispatch(Order(n=1))
            await started.wait()
            await bus.dispatch(Order(n=2))
            with pytest.raises(QueueFull):
                await bus.dispatch(Order(n=3))
            assert bus.stats.dispatched == 2
            gate.set()
    assert bus.stats.succeeded == 2


async def test_dispatch_now_counts_too() -> None:
    bus = EventBus()

    @bus.listen(Order)
    async def fine(event: Order) -> None:
        pass

    @bus.listen(Order)
    async def broken(event: Order) -> None:
        raise ValueError

    with pytest.raises(ExceptionGroup) as caught:
        await bus.dispatch_now(Order())
    assert [type(e) for e in caught.value.exceptions] == [ValueError]
    s = bus.stats
    assert (s.dispatched, s.succeeded, s.failed, s.running) == (1, 1, 1, 0)


async def test_the_sync_driver_keeps_the_same_counts() -> None:
    bus = EventBus(driver="sync")
    inside: list[int] = []

    @bus.listen(Order, tries=3)
    async def flaky(event: Order) -> None:
        inside.append(bus.stats.running)
        if len(inside) < 3:
            raise RuntimeError

    await bus.dispatch(Order())
    s = bus.stats
    assert inside == [1, 1, 1]
    assert (s.dispatched, s.succeeded, s.retried, s.failed, s.queued, s.running) == (
        1,
        1,
        2,
        0,
        0,
        0,
    )
