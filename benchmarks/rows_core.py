"""Scenarios S1-S6 for eventbus and the raw runtime baselines."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from contextvars import copy_context
from dataclasses import dataclass
from functools import cache
from typing import Any

from eventbus import Event, EventBus, EventListener

from ._pool import RawPool, Stepper
from ._registry import (
    BACKENDS,
    Clock,
    MemoryCase,
    Row,
    Tally,
    WorkMissing,
    block_of,
    memory_case,
    register,
    scenario,
    uvloop_missing,
)

scenario("S1", "dispatch_now, 1 async listener, awaited per event")
scenario("S2", "dispatch_now, 10 listeners")
scenario("S3", "dispatch through the farm (100 workers, context on), 1 listener: throughput")
scenario("S4", "dispatch through the farm, 10 listeners per event: throughput")
scenario("S5", "event construction (2-field frozen event), for reference")
scenario("S6", "S1 with 1 000 unrelated event types / a 5-level hierarchy", baseline_from="S1")
scenario("S7", "peak RSS over idle while events go through a farm with max_queue=10 000")


class Ping(Event):
    """The 2-field frozen event every scenario dispatches."""

    i: int
    payload: str


Handler = Callable[[Any], Coroutine[Any, Any, None]]


def counting(tally: Tally) -> Handler:
    """The trivial listener work of every row: record the event (verified afterwards)."""
    hit = tally.hit

    async def on_ping(event: Any) -> None:
        hit(event)

    return on_ping


def counting_class(tally: Tally) -> type[EventListener]:
    hit = tally.hit

    class CountPing(EventListener):
        async def handle(self, event: Ping) -> None:
            hit(event)

    return CountPing


def pings(k: int, cls: type[Ping] = Ping) -> list[Ping]:
    return [cls(i=i, payload="x") for i in range(k)]


def _unavailable(backend: str) -> Callable[[], str | None]:
    return uvloop_missing if backend == "uvloop" else (lambda: None)


def row(scenario_id: str, name: str, kind: str, backend: str, **kw: Any) -> Callable[..., Any]:
    def decorator(body: Any) -> Any:
        register(
            Row(scenario_id, name, kind, backend, body, unavailable=_unavailable(backend), **kw)
        )
        return body

    return decorator


# --- S1 / S2: awaited per event ----------------------------------------------------------


async def _direct(n: int, clock: Clock, listeners: int) -> Sequence[Tally]:
    k, reps = block_of(n)
    events = pings(k)
    tallies = [Tally(events, reps) for _ in range(listeners)]
    handlers = tuple(counting(t) for t in tallies)
    if listeners == 1:
        handler = handlers[0]
        with clock:
            for _ in range(reps):
                for event in events:
                    await handler(event)
    else:
        with clock:
            for _ in range(reps):
                for event in events:
                    for handler in handlers:
                        await handler(event)
    return tallies


async def _direct_in_context(n: int, clock: Clock, listeners: int) -> Sequence[Tally]:
    """The floor for per-listener isolation: each call stepped inside its own context copy."""
    k, reps = block_of(n)
    events = pings(k)
    tallies = [Tally(events, reps) for _ in range(listeners)]
    handlers = tuple(counting(t) for t in tallies)
    with clock:
        for _ in range(reps):
            for event in events:
                for handler in handlers:
                    ctx = copy_context()
                    coro = handler(event)
                    try:
                        first = ctx.run(coro.send, None)
                    except StopIteration:
                        continue
                    await Stepper(coro, ctx, first)
    return tallies


async def _dict_lookup(n: int, clock: Clock) -> Sequence[Tally]:
    k, reps = block_of(n)
    events = pings(k)
    tally = Tally(events, reps)
    table: dict[type, tuple[Handler, ...]] = {Ping: (counting(tally),)}
    with clock:
        for _ in range(reps):
            for event in events:
                for handler in table[type(event)]:
                    await handler(event)
    return [tally]


async def _dispatch_now(
    n: int,
    clock: Clock,
    listeners: int = 1,
    *,
    as_class: bool = False,
    unrelated: int = 0,
    deep: bool = False,
) -> Sequence[Tally]:
    k, reps = block_of(n)
    events = pings(k, _hierarchy()[-1] if deep else Ping)
    tallies = [Tally(events, reps) for _ in range(listeners)]
    bus = EventBus(name="bench")
    key: type[Ping] = _hierarchy()[0] if deep else Ping
    for t in tallies:
        bus.listen(key)(counting_class(t) if as_class else counting(t))
    for cls in _unrelated_types()[:unrelated]:
        bus.listen(cls)(_never)
    dispatch_now = bus.dispatch_now
    with clock:
        for _ in range(reps):
            for event in events:
                await dispatch_now(event)
    _check_stats(bus, n * listeners)
    return tallies


async def _never(event: Event) -> None:
    raise AssertionError(f"an unrelated listener ran for {event!r}")


@cache
def _unrelated_types() -> list[type[Ping]]:
    """1 000 event classes nobody dispatches (built once: pydantic classes are slow to make)."""
    return [type(f"Unrelated{i}", (Ping,), {"__module__": __name__}) for i in range(1000)]


@cache
def _hierarchy() -> list[type[Ping]]:
    """``Level1 <- Level2 <- ... <- Level5``; listeners on Level1, Level5 is dispatched."""
    levels: list[type[Ping]] = []
    base: type[Ping] = Ping
    for depth in range(1, 6):
        base = type(f"Level{depth}", (base,), {"__module__": __name__})
        levels.append(base)
    return levels


def _check_stats(bus: EventBus, jobs: int) -> None:
    stats = bus.stats
    if stats.succeeded != jobs or stats.failed or stats.running or stats.queued:
        raise AssertionError(f"eventbus stats are off after {jobs} jobs: {stats!r}")


for _b in BACKENDS:
    row("S1", "direct await", "raw", _b, baseline=True, note="`await handler(event)`")(
        lambda n, clock: _direct(n, clock, 1)
    )
    row("S1", "eventbus dispatch_now", "eventbus", _b, note="function listener")(
        lambda n, clock: _dispatch_now(n, clock)
    )
    row("S2", "ten direct awaits", "raw", _b, baseline=True)(lambda n, clock: _direct(n, clock, 10))
    row("S2", "eventbus dispatch_now", "eventbus", _b, note="10 function listeners")(
        lambda n, clock: _dispatch_now(n, clock, 10)
    )
    row(
        "S6",
        "eventbus, 1 000 unrelated types",
        "eventbus",
        _b,
        versus=f"S1/eventbus dispatch_now/{_b}",
    )(lambda n, clock: _dispatch_now(n, clock, unrelated=1000))
    row(
        "S6",
        "eventbus, 5-level hierarchy",
        "eventbus",
        _b,
        versus=f"S1/eventbus dispatch_now/{_b}",
        note="listener on Level1, Level5 dispatched",
    )(lambda n, clock: _dispatch_now(n, clock, deep=True))

ISOLATED = "each listener stepped in its own copy_context(), as eventbus does"
row("S1", "direct, in copy_context()", "raw", "asyncio", note=ISOLATED)(
    lambda n, clock: _direct_in_context(n, clock, 1)
)
row("S2", "ten direct, each in copy_context()", "raw", "asyncio", note=ISOLATED)(
    lambda n, clock: _direct_in_context(n, clock, 10)
)
row("S1", "dict lookup + await", "raw", "asyncio", note="`table[type(e)]` then await each")(
    _dict_lookup
)
row("S1", "eventbus dispatch_now, listener class", "eventbus", "asyncio")(
    lambda n, clock: _dispatch_now(n, clock, as_class=True)
)


# --- S3 / S4: through a bounded pool -------------------------------------------------------


async def _raw_pool(n: int, clock: Clock, listeners: int, context: bool) -> Sequence[Tally]:
    k, reps = block_of(n)
    events = pings(k)
    tallies = [Tally(events, reps) for _ in range(listeners)]
    handlers = tuple(counting(t) for t in tallies)
    async with RawPool(100, 10_000).running() as pool:
        put = pool.put_in_context if context else pool.put
        with clock:
            for _ in range(reps):
                for event in events:
                    for handler in handlers:
                        await put(handler, event)
            await pool.join()
    return tallies


async def _farm(n: int, clock: Clock, listeners: int) -> Sequence[Tally]:
    k, reps = block_of(n)
    events = pings(k)
    tallies = [Tally(events, reps) for _ in range(listeners)]
    bus = EventBus(max_concurrency=100, name="bench")
    for t in tallies:
        bus.listen(Ping)(counting(t))
    async with bus:
        dispatch = bus.dispatch
        with clock:
            for _ in range(reps):
                for event in events:
                    await dispatch(event)
            await bus.join()
    _check_stats(bus, n * listeners)
    return tallies


for _b in BACKENDS:
    row("S3", "raw pool + copy_context", "raw", _b, baseline=True)(
        lambda n, clock: _raw_pool(n, clock, 1, True)
    )
    row("S3", "raw pool", "raw", _b, note="no context per job")(
        lambda n, clock: _raw_pool(n, clock, 1, False)
    )
    row("S3", "eventbus dispatch (farm)", "eventbus", _b)(lambda n, clock: _farm(n, clock, 1))
    row("S4", "raw pool + copy_context", "raw", _b, baseline=True, note="10 jobs per event")(
        lambda n, clock: _raw_pool(n, clock, 10, True)
    )
    row("S4", "eventbus dispatch (farm)", "eventbus", _b)(lambda n, clock: _farm(n, clock, 10))

row("S4", "raw pool", "raw", "asyncio", note="no context per job")(
    lambda n, clock: _raw_pool(n, clock, 10, False)
)


# --- S5: construction ----------------------------------------------------------------------


def _field_i(obj: Any) -> int:
    return int(obj.i)


@dataclass(frozen=True, slots=True)
class RawPing:
    i: int
    payload: str


def constructing(cls: Callable[..., Any]) -> Callable[[int, Clock], Any]:
    """S5 body: build ``cls(i=..., payload="x")`` in the timed loop (shared by the peer rows)."""

    async def body(n: int, clock: Clock) -> Sequence[Tally]:
        k, reps = block_of(n)
        tally = Tally(range(k), reps, key=_field_i)
        hit = tally.hit
        with clock:
            for _ in range(reps):
                for i in range(k):
                    hit(cls(i=i, payload="x"))
        return [tally]

    return body


row("S5", "frozen slots dataclass", "raw", "asyncio", baseline=True)(constructing(RawPing))
row("S5", "eventbus Event (pydantic, validated)", "eventbus", "asyncio")(constructing(Ping))


# --- S7: memory ----------------------------------------------------------------------------


class _Counts:
    """A tally that does not grow with the event count (S7 measures memory)."""

    def __init__(self, k: int, reps: int) -> None:
        self.seen = [0] * k
        self.reps = reps

    async def listener(self, event: Ping) -> None:
        self.seen[event.i] += 1

    def verify(self, what: str) -> None:
        if any(c != self.reps for c in self.seen):
            raise WorkMissing(f"{what}: a listener did not run exactly once per event")


async def _farm_memory(events: int) -> Sequence[_Counts]:
    """Push ``events`` through a farm as fast as one producer can; events made on the fly."""
    k = 1000
    reps = events // k
    tally = _Counts(k, reps)
    bus = EventBus(max_concurrency=100, max_queue=10_000, name="bench")
    bus.listen(Ping)(tally.listener)
    async with bus:
        for _ in range(reps):
            for i in range(k):
                await bus.dispatch(Ping(i=i, payload="x"))
        await bus.join()
    _check_stats(bus, events)
    return [tally]


for _b in ("asyncio", "trio"):
    memory_case(MemoryCase("S7", "eventbus dispatch (farm)", _b, _farm_memory))
