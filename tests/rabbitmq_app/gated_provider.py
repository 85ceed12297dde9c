"""A second provider for the test app: its ``events`` plus listeners the tests hold or time.

``eventbus work --provider rabbitmq_app.gated_provider`` (the worker harness passes
``--provider`` first, so a later one in its extra arguments wins).
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from eventbus import Event, EventListener

from .event_provider import events as app_events
from .listeners import record

#: The file a test creates to let held jobs finish (in the results directory).
GATE = "open.gate"


class Held(Event):
    n: int
    hold: bool


class RecordHeld(EventListener):
    """Records ``start``; a held job then waits for the test's gate file before ``done``."""

    async def handle(self, event: Held) -> None:
        record("start", event.n)
        if event.hold:
            gate = Path(os.environ["EVENTBUS_TEST_RESULTS"]) / GATE
            deadline = time.monotonic() + 120
            while not gate.exists():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no {gate} after 120s")
                await asyncio.sleep(0.01)
        record("done", event.n)


class Tiered(Event):
    n: int


#: Ten distinct backoffs: the rabbitmq driver rounds each up to a delay tier (125, 160 and
#: 200 ms), so they share three delay queues.
TEN_BACKOFFS = (0.11, 0.12, 0.13, 0.14, 0.15, 0.16, 0.17, 0.18, 0.19, 0.2)


class FailsThroughTenBackoffs(EventListener):
    tries = len(TEN_BACKOFFS) + 1
    backoff = TEN_BACKOFFS

    async def handle(self, event: Tiered) -> None:
        record("attempt", event.n)
        raise RuntimeError(f"tiered {event.n}")

    async def failed(self, event: Tiered, exc: BaseException) -> None:
        record("failed", event.n, type(exc).__name__)


class Waits(Event):
    n: int


class RetriesInHalfAMinute(EventListener):
    tries = 2
    backoff = 30

    async def handle(self, event: Waits) -> None:
        record("attempt", event.n)
        raise RuntimeError(f"waits {event.n}")


events: dict[type[Event], list[type[EventListener]]] = {
    **app_events,
    Held: [RecordHeld],
    Tiered: [FailsThroughTenBackoffs],
    Waits: [RetriesInHalfAMinute],
}
