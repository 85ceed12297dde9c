"""The ``sync`` driver: ``dispatch`` runs the jobs inline and returns when they are done."""

from __future__ import annotations

from contextvars import Context
from typing import TYPE_CHECKING

import anyio

from .._attempt import run_attempt
from .base import Driver

if TYPE_CHECKING:
    from .._event import Event
    from .._listener import Listener

__all__ = ["SyncDriver"]


class SyncDriver(Driver):
    """No background work at all: for scripts, simple deployments and tests.

    Listeners run one after another with their full policy (tries, backoff, timeout);
    their failures go through the bus's failure path and never reach the caller.
    """

    name = "sync"

    async def submit(self, event: Event, listeners: tuple[Listener, ...], context: Context) -> None:
        bus = self.bus
        # Copies are taken up front so no listener sees another's changes.
        contexts = [context] + [context.copy() for _ in listeners[1:]]
        for listener, ctx in zip(listeners, contexts, strict=True):
            attempt = 1
            while True:
                bus.stats.running += 1
                try:
                    exc = await run_attempt(listener, event, ctx)
                finally:
                    bus.stats.running -= 1
                if exc is None:
                    bus.stats.succeeded += 1
                    break
                if attempt >= listener.policy.tries:
                    await bus.job_failed(listener, event, exc, attempt)
                    break
                delay = listener.policy.delay(attempt)
                bus.job_retrying(listener, event, exc, attempt, delay)
                attempt += 1
                await anyio.sleep(delay)
