"""Requirement 6: `async with bus.defer()` holds dispatches until the block succeeds."""

from __future__ import annotations

import anyio
import pytest

from eventbus import Event, EventBus, context, define_key

pytestmark = pytest.mark.anyio

UserId = define_key[str]("defer_test_user")


class Placed(Event):
    n: int = 0


@pytest.fixture(params=["async_farm", "sync"])
def driver(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def recording_bus(driver: str) -> tuple[EventBus, list[tuple[int, str | None]]]:
    bus = EventBus(driver=driver)
    seen: list[tuple[int, str | None]] = []

    @bus.listen(Placed)
    async def record(event: Placed) -> None:
        seen.append((event.n, context.get(UserId)))

    return bus, seen


async def test_held_until_the_block_succeeds_then_released_in_order(driver: str) -> None:
    bus, seen = recording_bus(driver)
    async with bus:
        async with bus.defer():
            for n in range(3):
                await bus.dispatch(Placed(n=n))
            await bus.join()
            assert seen == []  # held, not queued
            assert bus.stats.dispatched == 0
        await bus.join()
    assert [n for n, _ in seen] == [0, 1, 2]
    assert bus.stats.dispatched == 3


async def test_discarded_when_the_block_raises(driver: str) -> None:
    bus, seen = recording_bus(driver)
    async with bus:
        with pytest.raises(LookupError, match="the transaction rolled back"):
            async with bus.defer():
                await bus.dispatch(Placed(n=1))
                raise LookupError("the transaction rolled back")
        await bus.dispatch(Placed(n=2))  # not deferred any more
        await bus.join()
    assert [n for n, _ in seen] == [2]
    assert bus.stats.dispatched == 1


async def test_discarded_when_the_block_is_cancelled() -> None:
    bus, seen = recording_bus("async_farm")
    async with bus:
        with anyio.CancelScope() as scope:
            async with bus.defer():
                await bus.dispatch(Placed(n=1))
                scope.cancel()
                await anyio.sleep_forever()
        await bus.join()
    assert seen == []


async def test_nested_blocks_release_into_the_outer_one(driver: str) -> None:
    bus, seen = recording_bus(driver)
    async with bus:
        async with bus.defer():
            await bus.dispatch(Placed(n=1))
            async with bus.defer():
                await bus.dispatch(Placed(n=2))
            await bus.join()
            assert seen == []  # the inner block released into the outer one
            with pytest.raises(ValueError, match="inner block failed"):
                async with bus.defer():
                    await bus.dispatch(Placed(n=3))
                    raise ValueError("inner block failed")
            await bus.dispatch(Placed(n=4))
        await bus.join()
    assert [n for n, _ in seen] == [1, 2, 4]


async def test_an_outer_failure_discards_what_inner_blocks_released() -> None:
    bus, seen = recording_bus("async_farm")
    async with bus:
        with pytest.raises(RuntimeError, match="outer block failed"):
            async with bus.defer():
                async with bus.defer():
                    await bus.dispatch(Placed(n=1))
                raise RuntimeError("outer block failed")
        await bus.join()
    assert seen == []


async def test_defer_is_task_local() -> None:
    bus, seen = recording_bus("async_farm")
    go = anyio.Event()
    other_dispatched = anyio.Event()

    async def other_request() -> None:  # a concurrent task, started before the block
        await go.wait()
        await bus.dispatch(Placed(n=2))
        other_dispatched.set()

    with anyio.fail_after(5):
        async with bus, anyio.create_task_group() as tg:
            tg.start_soon(other_request)
            async with bus.defer():
                await bus.dispatch(Placed(n=1))
                go.set()
                await other_dispatched.wait()
                await bus.join()
                assert [n for n, _ in seen] == [2]  # not held by our block
            await bus.join()
    assert [n for n, _ in seen] == [2, 1]


async def test_tasks_started_inside_the_block_are_held_too() -> None:
    bus, seen = recording_bus("async_farm")
    with anyio.fail_after(5):
        async with bus:
            async with bus.defer():
                async with anyio.create_task_group() as tg:
                    for n in range(5):
                        tg.start_soon(bus.dispatch, Placed(n=n))
                await bus.join()
                assert seen == []
            await bus.join()
    assert sorted(n for n, _ in seen) == list(range(5))


async def test_released_events_keep_their_dispatch_context(driver: str) -> None:
    bus, seen = recording_bus(driver)
    async with bus:
        async with bus.defer():
            context.set(UserId, "alice")
            await bus.dispatch(Placed(n=1))
            context.set(UserId, "bob")
            await bus.dispatch(Placed(n=2))
            context.set(UserId, "carol")  # set last, before release: seen by nobody
        await bus.join()
    assert seen == [(1, "alice"), (2, "bob")]


async def test_a_listener_of_a_released_event_dispatches_for_real() -> None:
    bus = EventBus()
    seen: list[str] = []

    class Shipped(Event):
        pass

    @bus.listen(Placed)
    async def ship(event: Placed) -> None:
        await bus.dispatch(Shipped())  # not held by the (closed) block it came from

    @bus.listen(Shipped)
    async def notify(event: Shipped) -> None:
        seen.append("notified")

    with anyio.fail_after(5):
        async with bus:
            async with bus.defer():
                await bus.dispatch(Placed())
            await bus.join()
    assert seen == ["notified"]


async def test_defer_of_one_bus_does_not_hold_another() -> None:
    bus_a, seen_a = recording_bus("async_farm")
    bus_b, seen_b = recording_bus("async_farm")
    async with bus_a, bus_b:
        async with bus_a.defer():
            await bus_a.dispatch(Placed(n=1))
            await bus_b.dispatch(Placed(n=2))
            await bus_b.join()
            assert [n for n, _ in seen_b] == [2]
            assert seen_a == []
        await bus_a.join()
    assert [n for n, _ in seen_a] == [1]
