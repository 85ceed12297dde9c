"""A listener that kills its worker process (``os._exit(1)``) for one chosen job."""

from __future__ import annotations

import asyncio
import os

from eventbus import EventListener
from eventbus.worker import current_job

from .b3_events import Fragile
from .listeners import record

_started = 0
_changed: asyncio.Event | None = None


def _signal() -> asyncio.Event:
    global _changed
    if _changed is None:
        _changed = asyncio.Event()
    return _changed


class CrashOrWork(EventListener):
    async def handle(self, event: Fragile) -> None:
        global _started
        job = current_job()
        assert job is not None
        if event.crash:
            record("crash", event.n)
            if not job.redelivered:
                # The first run: die only once the innocent jobs run beside it, as when a
                # worker with prefetch 10 holds them all.
                while _started < event.beside:
                    changed = _signal()
                    changed.clear()
                    await changed.wait()
            os._exit(1)
        record("start", event.n)
        _started += 1
        _signal().set()
        await asyncio.sleep(event.seconds)  # the job's work
        record("done", event.n)

    async def failed(self, event: Fragile, exc: BaseException) -> None:
        record("failed", event.n, type(exc).__name__)
