"""Peer libraries, each used the way its documentation shows (asyncio only).

Every peer's listeners do the same ``tally.hit(event)`` as eventbus's, and are verified the
same way. Where a peer does something different from eventbus, the row's note says so.
"""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
from collections.abc import Callable, Sequence
from typing import Any

from ._registry import Clock, Row, Tally, block_of, register

_names = itertools.count()


def _needs(module: str) -> Callable[[], str | None]:
    def check() -> str | None:
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install -e '.[bench]')"
        return None

    return check


def peer(scenario_id: str, name: str, module: str, note: str, **kw: Any) -> Callable[..., Any]:
    def decorator(body: Any) -> Any:
        register(
            Row(
                scenario_id,
                name,
                "peer",
                "asyncio",
                body,
                note=note,
                unavailable=_needs(module),
                **kw,
            )
        )
        return body

    return decorator


def _handlers(tallies: Sequence[Tally]) -> list[Any]:
    """Handlers taking the event positionally (``handler(event)``)."""
    out = []
    for index, tally in enumerate(tallies):
        hit = tally.hit

        async def handler(event: Any, _hit: Callable[[Any], None] = hit) -> None:
            _hit(event)

        handler.__name__ = handler.__qualname__ = f"handler{index}"  # bubus keys by name
        out.append(handler)
    return out


# --- blinker: Signal.send_async awaits every receiver in turn ------------------------------


async def _blinker(n: int, clock: Clock, listeners: int) -> Sequence[Tally]:
    from blinker import Signal

    from .rows_core import pings

    k, reps = block_of(n)
    events = pings(k)
    tallies = [Tally(events, reps) for _ in range(listeners)]
    signal = Signal()
    receivers = []
    for tally in tallies:
        hit = tally.hit

        async def receiver(sender: Any, event: Any, _hit: Callable[[Any], None] = hit) -> None:
            _hit(event)

        receivers.append(receiver)
        signal.connect(receiver)  # weak by default: `receivers` keeps them alive
    send = signal.send_async
    with clock:
        for _ in range(reps):
            for event in events:
                await send(None, event=event)
    return tallies


BLINKER_NOTE = "no queue, no per-receiver context; first exception stops the rest"
peer("S1", "blinker send_async", "blinker", BLINKER_NOTE)(lambda n, c: _blinker(n, c, 1))
peer("S2", "blinker send_async", "blinker", BLINKER_NOTE)(lambda n, c: _blinker(n, c, 10))


# --- pyee: AsyncIOEventEmitter schedules a task per handler ---------------------------------


async def _pyee(n: int, clock: Clock, listeners: int, awaited: bool) -> Sequence[Tally]:
    from pyee.asyncio import AsyncIOEventEmitter

    from .rows_core import pings

    k, reps = block_of(n)
    events = pings(k)
    tallies = [Tally(events, reps) for _ in range(listeners)]
    emitter = AsyncIOEventEmitter()
    for handler in _handlers(tallies):
        emitter.on("ping", handler)
    emit, wait = emitter.emit, emitter.wait_for_complete
    with clock:
        if awaited:
            for _ in range(reps):
                for event in events:
                    emit("ping", event)
                    await wait()
        else:
            for _ in range(reps):
                for event in events:
                    emit("ping", event)
            await wait()
    return tallies


PYEE_AWAITED = "emit + wait_for_complete per event; a task per handler"
PYEE_FF = "fire-and-forget: a task per handler, no queue, no bound"
peer("S1", "pyee emit + wait_for_complete", "pyee", PYEE_AWAITED)(lambda n, c: _pyee(n, c, 1, True))
peer("S2", "pyee emit + wait_for_complete", "pyee", PYEE_AWAITED)(
    lambda n, c: _pyee(n, c, 10, True)
)
peer("S3", "pyee emit (fire-and-forget)", "pyee", PYEE_FF)(lambda n, c: _pyee(n, c, 1, False))
peer("S4", "pyee emit (fire-and-forget)", "pyee", PYEE_FF)(lambda n, c: _pyee(n, c, 10, False))


# --- bubus: EventBus with a serial queue, history and event results ------------------------


_bubus_event: Any = None


def _bubus_ping() -> Any:
    global _bubus_event
    if _bubus_event is None:
        from bubus import BaseEvent

        class BubusPing(BaseEvent[None]):  # type: ignore[misc]
            i: int
            payload: str

        _bubus_event = BubusPing
    return _bubus_event


async def _bubus(n: int, clock: Clock, listeners: int, awaited: bool) -> Sequence[Tally]:
    import logging

    from bubus import EventBus as BubusBus

    logging.getLogger("bubus").setLevel(logging.ERROR)
    ping = _bubus_ping()
    # bubus events carry their results and history: one fresh event per dispatch.
    events = [ping(i=j, payload="x") for j in range(n)]
    tallies = [Tally(events) for _ in range(listeners)]
    bus = BubusBus(name=f"bench{next(_names)}")
    for handler in _handlers(tallies):
        bus.on(ping, handler)
    try:
        with clock:
            if awaited:
                for event in events:
                    await bus.dispatch(event)
            else:
                # bubus refuses a 100th pending event: dispatch in batches of 50.
                for start in range(0, n, 50):
                    for event in events[start : start + 50]:
                        bus.dispatch(event)
                    await bus.wait_until_idle()
    finally:
        await bus.stop(clear=True)
    return tallies


BUBUS_NOTE = "serial queue (one event at a time), keeps history and results"
BUBUS_BATCH = "serial queue; refuses 100 pending, so batches of 50 + wait_until_idle"
for _sid, _listeners, _awaited, _name in (
    ("S1", 1, True, "bubus await dispatch"),
    ("S2", 10, True, "bubus await dispatch"),
    ("S3", 1, False, "bubus dispatch + wait_until_idle"),
    ("S4", 10, False, "bubus dispatch + wait_until_idle"),
):
    peer(_sid, _name, "bubus", BUBUS_NOTE if _awaited else BUBUS_BATCH, start_n=32)(
        lambda n, c, _l=_listeners, _a=_awaited: _bubus(n, c, _l, _a)
    )


# --- fastapi-events: dispatch() outside a request makes a task per event --------------------


async def _fastapi_events(n: int, clock: Clock, listeners: int) -> Sequence[Tally]:
    from fastapi_events import handler_store, middleware_identifier
    from fastapi_events.dispatcher import dispatch
    from fastapi_events.handlers.local import LocalHandler

    # dispatch() adds a traceparent to the payload: one fresh dict per dispatch.
    payloads = [{"i": j} for j in range(n)]
    tallies = [Tally(payloads) for _ in range(listeners)]
    local = LocalHandler()
    for tally in tallies:
        hit = tally.hit

        async def on_ping(event, _hit=hit):  # type: ignore[no-untyped-def]
            _hit(event[1])

        local.register(on_ping, event_name="ping")
    handler_store[id(local)] = [local]
    token = middleware_identifier.set(id(local))
    me = asyncio.current_task()
    try:
        with clock:
            for payload in payloads:
                dispatch("ping", payload)
            # no join(): the library hands each event to a task of its own; wait for them.
            await asyncio.gather(*(t for t in asyncio.all_tasks() if t is not me))
    finally:
        middleware_identifier.reset(token)
        del handler_store[id(local)]
    return tallies


FASTAPI_NOTE = "outside a request: a task per event, no queue, no bound, no join"
peer("S3", "fastapi-events dispatch", "fastapi_events", FASTAPI_NOTE, start_n=256)(
    lambda n, c: _fastapi_events(n, c, 1)
)
peer("S4", "fastapi-events dispatch", "fastapi_events", FASTAPI_NOTE, start_n=256)(
    lambda n, c: _fastapi_events(n, c, 10)
)


# --- S5: construction of a bubus event, for reference ---------------------------------------


async def _bubus_construct(n: int, clock: Clock) -> Sequence[Tally]:
    from .rows_core import constructing

    tallies: Sequence[Tally] = await constructing(_bubus_ping())(n, clock)
    return tallies  # bubus is imported only when the row runs


peer("S5", "bubus BaseEvent", "bubus", "adds a uuid7 id, timestamps, result slots")(
    _bubus_construct
)
