"""The ``sync`` driver: ``dispatch`` runs the jobs inline and returns when they are done."""

from __future__ import annotations

from contextvars import Context

import anyio

from .base import Driver, Event, Listener, LocalJob, run_attempt, set_current_job

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
        first: LocalJob | None = None
        for listener, ctx in zip(listeners, contexts, strict=True):
            job = LocalJob(listener, event, 1)
            if first is None:
                first = job
            else:
                job.share_event_with(first)
            set_current_job(ctx, job)  # the same job (its attempt moving) across retries
            while True:
                bus.stats.running += 1
                try:
                    exc = await run_attempt(listener, event, ctx)
                finally:
                    bus.stats.running -= 1
                if exc is None:
                    bus.stats.succeeded += 1
                    break
                delay = await bus.attempt_failed(listener, event, exc, job.attempt, ctx)
                if delay is None:
                    break
                job.attempt += 1
                await anyio.sleep(delay)
