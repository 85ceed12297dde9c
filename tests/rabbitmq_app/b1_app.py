"""Events, listeners and provider (``rabbitmq_app.b1_app``) for the worker-hardening tests.

Each listener records its runs like the main test app (``rabbitmq_app.listeners.record``).
"""

from __future__ import annotations

import asyncio
import math
from typing import Annotated, Any

from pydantic import BeforeValidator

import eventbus
from eventbus import Event, EventListener, Policy
from eventbus.worker import current_job

from .listeners import record


def _no_boom(value: Any) -> Any:
    if value == "boom":
        raise LookupError("boom is not a code")  # not a ValueError: pydantic does not wrap it
    return value


class B1Job(Event):
    n: int


class B1Cancel(Event):
    n: int


class B1SelfCancel(Event):
    n: int


class B1BadBackoff(Event):
    n: int


class B1FailsOnce(Event):
    n: int


class B1Coded(Event):
    code: Annotated[str, BeforeValidator(_no_boom)]


class B1Record(EventListener):
    async def handle(self, event: B1Job) -> None:
        record("done", event.n)


class RaisesCancelled(EventListener):
    """A library leaking ``asyncio.CancelledError`` from an internal timeout."""

    tries = 2

    async def handle(self, event: B1Cancel) -> None:
        record("attempt", event.n)
        raise asyncio.CancelledError()

    async def failed(self, event: B1Cancel, exc: BaseException) -> None:
        record("failed", event.n, type(exc).__name__)


class CancelsItself(EventListener):
    tries = 2

    async def handle(self, event: B1SelfCancel) -> None:
        record("attempt", event.n)
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        await asyncio.sleep(5)

    async def failed(self, event: B1SelfCancel, exc: BaseException) -> None:
        record("failed", event.n, type(exc).__name__)


class BadBackoff(EventListener):
    """Fails, with a backoff of ``inf`` set behind registration's back (another version)."""

    tries = 3

    async def handle(self, event: B1BadBackoff) -> None:
        record("attempt", event.n)
        compiled = eventbus.get_bus()._table.compile(BadBackoff)
        policy = object.__new__(Policy)  # bypasses Policy's checks, as old code would
        policy.tries, policy.backoff, policy.timeout = 3, (math.inf,), None
        compiled.policy = policy
        raise RuntimeError(f"bad backoff {event.n}")

    async def failed(self, event: B1BadBackoff, exc: BaseException) -> None:
        record("failed", event.n, type(exc).__name__)


class FailsOnce(EventListener):
    tries = 2

    async def handle(self, event: B1FailsOnce) -> None:
        record("attempt", event.n)
        job = current_job()
        assert job is not None
        if job.attempt == 1:
            raise RuntimeError("first attempt fails")
        record("done", event.n)


class RecordCoded(EventListener):
    async def handle(self, event: B1Coded) -> None:
        record("done", 0, event.code)


events: dict[type[Event], list[type[EventListener]]] = {
    B1Job: [B1Record],
    B1Cancel: [RaisesCancelled],
    B1SelfCancel: [CancelsItself],
    B1BadBackoff: [BadBackoff],
    B1FailsOnce: [FailsOnce],
    B1Coded: [RecordCoded],
}
