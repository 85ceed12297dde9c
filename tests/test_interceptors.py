"""bus.intercept(fn): the public hook fakes are built on (issue 11, requirement 7)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import eventbus
import eventbus.pytest_plugin
import eventbus.testing
from eventbus import Event, EventBus

pytestmark = pytest.mark.anyio


class Seen(Event):
    n: int = 0


class Other(Event):
    pass


class Calls:
    def __init__(self) -> None:
        self.handled: list[Event] = []

    async def __call__(self, event: Event) -> None:
        self.handled.append(event)


def make_bus(driver: str = "sync") -> tuple[EventBus, Calls]:
    bus = EventBus(driver=driver)
    calls = Calls()
    bus.register({Event: [calls]})
    return bus, calls


class Taking:
    """An interceptor that records what it is offered and swallows ``types``."""

    def __init__(self, *types: type) -> None:
        self.types = types
        self.offered: list[Event] = []

    def __call__(self, event: Event) -> bool:
        self.offered.append(event)
        return isinstance(event, self.types)


async def test_an_interceptor_returning_true_swallows_dispatch_and_dispatch_now() -> None:
    bus, calls = make_bus()
    take = Taking(Seen)
    with bus.intercept(take):
        await bus.dispatch_now(Seen(n=1))
        await bus.dispatch(Seen(n=2))
        await bus.dispatch_now(Other())  # offered, refused: runs
    await bus.dispatch_now(Seen(n=3))  # after the block: not offered
    assert take.offered == [Seen(n=1), Seen(n=2), Other()]
    assert calls.handled == [Other(), Seen(n=3)]
    assert bus.stats.dispatched == 4  # a swallowed event still counts as dispatched


async def test_swallowed_events_never_reach_the_running_farm() -> None:
    bus, calls = make_bus("async_farm")
    async with bus:
        with bus.intercept(Taking(Seen)):
            await bus.dispatch(Seen(n=1))
            await bus.dispatch(Other())
        await bus.join()  # every job queued so far has finished
    assert calls.handled == [Other()]


async def test_interceptors_nest_innermost_first_falling_back_to_the_outer() -> None:
    bus, calls = make_bus()
    outer, inner = Taking(Event), Taking(Seen)
    with bus.intercept(outer):
        with bus.intercept(inner):
            await bus.dispatch_now(Seen(n=1))
            await bus.dispatch_now(Other())
        await bus.dispatch_now(Seen(n=2))
    assert inner.offered == [Seen(n=1), Other()]
    assert outer.offered == [Other(), Seen(n=2)]  # only what the inner one let through
    assert calls.handled == []


async def test_blocks_left_out_of_order_each_remove_only_their_own() -> None:
    bus, calls = make_bus()
    first, second = Taking(Seen), Taking(Other)
    a, b = bus.intercept(first), bus.intercept(second)
    a.__enter__()
    b.__enter__()
    a.__exit__(None, None, None)
    await bus.dispatch_now(Seen(n=1))  # `first` is gone: runs
    await bus.dispatch_now(Other())  # `second` still swallows
    b.__exit__(None, None, None)
    b.__exit__(None, None, None)  # leaving twice is harmless
    await bus.dispatch_now(Other())
    assert first.offered == []
    assert calls.handled == [Seen(n=1), Other()]


async def test_the_same_function_in_two_blocks_is_two_interceptors() -> None:
    bus, calls = make_bus()
    take = Taking(Seen)
    with bus.intercept(take):
        with bus.intercept(take):
            pass
        await bus.dispatch_now(Seen(n=1))  # the outer block still intercepts
    assert calls.handled == []


async def test_what_an_interceptor_raises_reaches_the_dispatcher() -> None:
    bus, calls = make_bus()

    def broken(event: Event) -> bool:
        raise LookupError(f"no room for {event.event_name}")

    with bus.intercept(broken):
        with pytest.raises(LookupError, match="no room for seen"):
            await bus.dispatch_now(Seen())
        with pytest.raises(LookupError, match="no room for seen"):
            await bus.dispatch(Seen())
    assert calls.handled == []


async def test_deferred_events_are_offered_on_release_and_discarded_ones_never() -> None:
    bus, calls = make_bus()
    take = Taking(Seen)
    with bus.intercept(take):
        with pytest.raises(ZeroDivisionError):
            async with bus.defer():
                await bus.dispatch(Seen(n=1))
                1 / 0  # noqa: B018
        async with bus.defer():
            await bus.dispatch(Seen(n=2))
            assert take.offered == []  # held until the block succeeds
    assert take.offered == [Seen(n=2)]
    assert calls.handled == []


async def test_a_fake_is_an_interceptor_and_nests_with_plain_ones() -> None:
    bus, calls = make_bus()
    take = Taking(Other)
    with bus.intercept(take), bus.fake(only=[Seen]) as fake:
        await bus.dispatch_now(Seen(n=1))  # the fake (innermost) records it
        await bus.dispatch_now(Other())  # the fake lets it through to `take`
    with bus.fake(only=[Seen]) as outer_fake, bus.intercept(Taking()):
        await bus.dispatch_now(Seen(n=2))  # the plain one refuses: the fake records it
    assert fake.events == [Seen(n=1)] and outer_fake.events == [Seen(n=2)]
    assert take.offered == [Other()]
    assert calls.handled == []


def test_a_block_cannot_be_entered_twice_and_fn_must_be_callable() -> None:
    bus = EventBus(driver="sync")
    block = bus.intercept(Taking())
    with block, pytest.raises(RuntimeError, match="entered already"):
        block.__enter__()
    with pytest.raises(TypeError, match=r"callable fn\(event\) -> bool"):
        bus.intercept("not a function")  # type: ignore[arg-type]


@pytest.fixture
def intercepted_default() -> Iterator[Taking]:
    """The default bus with an interceptor installed before ``event_bus`` isolates it."""
    bus = EventBus(name="default", driver="async_farm")
    eventbus.set_bus(bus)
    take = Taking(Event)
    with bus.intercept(take):
        yield take


async def test_the_event_bus_fixture_starts_with_no_interceptor(
    intercepted_default: Taking, event_bus: EventBus
) -> None:
    calls = Calls()
    event_bus.register({Seen: [calls]})
    await event_bus.dispatch_now(Seen(n=1))
    assert calls.handled == [Seen(n=1)] and intercepted_default.offered == []


def _bus_private_names() -> set[str]:
    bus = EventBus(driver="sync")
    names = set(vars(bus)) | set(dir(EventBus))
    return {name for name in names if name.startswith("_") and not name.startswith("__")}


@pytest.mark.parametrize("module", [eventbus.testing, eventbus.pytest_plugin])
def test_testing_helpers_use_no_private_attribute_of_the_bus(module: object) -> None:
    private = _bus_private_names()
    assert {"_table", "_stack"} <= private  # the scan sees the bus's state
    path = Path(str(getattr(module, "__file__", "")))
    used = [
        f"line {line}: .{attr}"
        for line, attr in sorted(
            (node.lineno, node.attr)
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Attribute) and node.attr in private
        )
    ]
    assert used == [], f"{path.name} reaches into the bus: {used}"
