"""Listeners of the RabbitMQ test app: each run appends a line to this process's results."""

from __future__ import annotations

import asyncio
import os
import time

from eventbus import EventListener, context, define_key
from eventbus.worker import current_job

from .events import ChatOpened, Doomed, Numbered, Slow

UserId = define_key[str]("user_id")

_fd: int | None = None


def record(kind: str, n: int, extra: str = "-") -> None:
    """``kind n job attempt redelivered user time pid extra`` on one line, one write."""
    global _fd
    directory = os.environ.get("EVENTBUS_TEST_RESULTS")
    if not directory:
        return
    if _fd is None:
        path = os.path.join(directory, f"{os.getpid()}.log")
        _fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    job = current_job()
    assert job is not None, "listeners of the test app run in eventbus work"
    user = context.get(UserId) or "-"
    line = (
        f"{kind} {n} {job.id} {job.attempt} {int(job.redelivered)} {user} "
        f"{time.time():.6f} {os.getpid()} {extra}\n"
    )
    os.write(_fd, line.encode())


class Record(EventListener):
    async def handle(self, event: Numbered) -> None:
        record("done", event.n)


class SlowRecord(EventListener):
    async def handle(self, event: Slow) -> None:
        record("start", event.n)
        await asyncio.sleep(event.seconds)
        record("done", event.n)


class AlwaysFails(EventListener):
    tries = 3
    backoff = (0.3, 0.6)

    async def handle(self, event: Doomed) -> None:
        record("attempt", event.n)
        raise RuntimeError(f"doomed {event.n}")

    async def failed(self, event: Doomed, exc: BaseException) -> None:
        record("failed", event.n, type(exc).__name__)


class RecordChat(EventListener):
    async def handle(self, event: ChatOpened) -> None:
        assert type(event.chat_id).__name__ == "ObjectId"
        record("done", 0, str(event.chat_id))
