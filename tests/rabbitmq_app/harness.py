"""Test helpers for the RabbitMQ tests: broker check, unique queues, worker subprocesses."""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from yarl import URL

from eventbus.drivers import _wire
from eventbus.drivers.rabbitmq import DEFAULT_URL, DELAY_TIERS_MS, Topology

TESTS = Path(__file__).resolve().parent.parent
ROOT = TESTS.parent
URL_ = os.environ.get("RABBITMQ_URL", DEFAULT_URL)
PROVIDER = "rabbitmq_app.event_provider"


def require_broker() -> str:
    """The broker URL; skip without a broker, except in CI where that is a failure."""
    import socket

    parsed = URL(URL_)
    try:
        socket.create_connection((parsed.host or "127.0.0.1", parsed.port or 5672), 2).close()
    except OSError as exc:
        message = (
            f"RabbitMQ is not reachable at {parsed.host}:{parsed.port} ({exc}); start it with "
            "`rabbitmq-server -detached` or set RABBITMQ_URL"
        )
        if os.environ.get("CI"):
            pytest.fail(f"{message} — CI is set, so the broker tests must run", pytrace=False)
        pytest.skip(message)
    return URL_


def envelope(**change: Any) -> bytes:
    """A wire body for the test app's ``Record`` listener; ``change`` overrides fields."""
    fields: dict[str, Any] = {
        "job": "p",
        "event_id": "e",
        "event_name": "numbered",
        "listener": "rabbitmq_app.listeners.Record",
        "attempt": 1,
        "dispatched_at": 0.0,
        "context": {},
        "data": b'{"n":1}',
    }
    fields.update(change)
    return _wire.encode(**fields)


def queue_names(queue: str) -> list[str]:
    """Every queue eventbus may declare for ``queue``: work, dead, poison, each delay tier."""
    topology = Topology(queue)
    delays = [topology.delay_name(ms) for ms in DELAY_TIERS_MS]
    return [queue, topology.dead, topology.poison, *delays]


async def delete_queues(queue: str) -> None:
    import aio_pika

    connection = await aio_pika.connect(URL_)
    async with connection:
        channel = await connection.channel()
        for name in queue_names(queue):
            await channel.queue_delete(name)  # a missing queue is fine (idempotent)


def fresh_queue() -> Iterator[str]:
    """For a ``queue`` fixture: a fresh queue name; its queues are deleted afterwards."""
    require_broker()
    name = f"test-{uuid.uuid4().hex[:10]}"
    yield name
    asyncio.run(delete_queues(name))


async def depth(queue: str) -> tuple[int, int]:
    """(ready messages, consumers) of ``queue``."""
    import aio_pika

    connection = await aio_pika.connect(URL_)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        result = declared.declaration_result
        return result.message_count or 0, result.consumer_count or 0


async def drain(queue: str) -> list[Any]:
    """Get (and ack) every message of ``queue``; returns the messages."""
    import aio_pika

    out = []
    connection = await aio_pika.connect(URL_)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        while (message := await declared.get(fail=False)) is not None:
            await message.ack()
            out.append(message)
    return out


@dataclass
class Record:
    kind: str
    n: int
    job: str
    attempt: int
    redelivered: bool
    user: str
    at: float
    pid: int
    extra: str


def results(directory: Path) -> list[Record]:
    out: list[Record] = []
    for path in directory.glob("*.log"):
        for line in path.read_text().splitlines():
            kind, n, job, attempt, red, user, at, pid, extra = line.split(" ")
            record = Record(
                kind, int(n), job, int(attempt), red == "1", user, float(at), int(pid), extra
            )
            out.append(record)
    return out


class WorkerProcess:
    """``python -m eventbus work`` on the test app's provider, logging to a file."""

    def __init__(
        self, queue: str, results: Path, log: Path, *args: str, provider: str = PROVIDER
    ) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS), env.get("PYTHONPATH", "")) if p)
        env["EVENTBUS_TEST_RESULTS"] = str(results)
        env["RABBITMQ_URL"] = URL_
        self.log = log
        self._log_file = log.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "eventbus",
                "work",
                "--provider",
                provider,
                "--queue",
                queue,
                *args,
            ],
            cwd=ROOT,
            env=env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    async def ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while "eventbus worker consuming queue" not in self.output():
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited {self.proc.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"worker not ready after {timeout}s:\n{self.output()}")
            await asyncio.sleep(0.05)

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    async def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"worker still running after {timeout}s:\n{self.output()}")
            await asyncio.sleep(0.02)
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self._log_file.close()


def worker_pool(queue: str, tmp_path: Path, provider: str = PROVIDER) -> Iterator[Any]:
    """For a ``workers`` fixture: ``await start(n, *args)`` starts ``n`` worker processes.

    ``provider`` is the module the workers load (``--provider``); ``start(..., provider=...)``
    overrides it for one start.

    ``start.results`` is the results directory; every worker is killed after the test.
    """
    started: list[WorkerProcess] = []
    results_dir = tmp_path / "results"
    results_dir.mkdir()

    default = provider

    async def start(count: int, *args: str, provider: str = default) -> list[WorkerProcess]:
        new = [
            WorkerProcess(
                queue,
                results_dir,
                tmp_path / f"worker-{len(started) + i}.log",
                *args,
                provider=provider,
            )
            for i in range(count)
        ]
        started.extend(new)
        await asyncio.gather(*(w.ready() for w in new))
        return new

    start.results = results_dir  # type: ignore[attr-defined]
    yield start
    for worker in started:
        worker.kill()


async def wait_until(predicate: Any, timeout: float, what: str, poll: float = 0.05) -> None:
    """Poll ``predicate()`` (state in other processes has no event to await) until true."""
    deadline = time.monotonic() + timeout
    while True:
        ok = predicate()
        if inspect.isawaitable(ok):
            ok = await ok
        if ok:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(poll)
