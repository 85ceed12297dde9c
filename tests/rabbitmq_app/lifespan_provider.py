"""A provider with a ``lifespan``: ``eventbus work`` opens its pool before jobs, closes after.

Lines go to this process's results file in the harness's format, so a test can check the
order: ``open`` first, every job's ``start``/``done`` (``extra`` says whether the pool was
open), ``close`` last.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from eventbus import Event, EventListener

from .events import Slow

POOL = {"open": False}


def _line(kind: str, n: int, extra: str = "-") -> None:
    directory = os.environ.get("EVENTBUS_TEST_RESULTS")
    if not directory:
        return
    path = os.path.join(directory, f"{os.getpid()}.log")
    line = f"{kind} {n} - 0 0 - {time.time():.6f} {os.getpid()} {extra}\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


class PoolRecord(EventListener):
    async def handle(self, event: Slow) -> None:
        state = "pool-open" if POOL["open"] else "pool-closed"
        _line("start", event.n, state)
        await asyncio.sleep(event.seconds)
        _line("done", event.n, "pool-open" if POOL["open"] else "pool-closed")


events: dict[type[Event], list[type[EventListener]]] = {Slow: [PoolRecord]}


@asynccontextmanager
async def lifespan() -> AsyncIterator[None]:
    POOL["open"] = True
    _line("open", 0)
    try:
        yield
    finally:
        await asyncio.sleep(0)
        POOL["open"] = False
        _line("close", 0)
