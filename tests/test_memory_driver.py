"""The memory driver: jobs through the wire format in-process, on asyncio and trio."""

from __future__ import annotations

import contextvars
from typing import Any

import anyio
import pytest

from eventbus import (
    Event,
    EventBus,
    EventListener,
    EventTooLarge,
    FarmNotRunning,
    RegistrationError,
    context,
    current_job,
    define_key,
)
from eventbus.drivers._runner import ATTEMPTS_HEADER, ERROR_TYPE_HEADER, REASON_HEADER
from eventbus.drivers.memory import MemoryDriver

pytestmark = pytest.mark.anyio

Tenant = define_key[str]("memory_test_tenant")
plain: contextvars.ContextVar[str] = contextvars.ContextVar("memory_test_plain", default="unset")


class Ping(Event):
    n: int


class Blob(Event):
    payload: str


seen: list[tuple[Any, ...]] = []
gate: list[anyio.Event] = []


class Record(EventListener):
    async def handle(self, event: Ping) -> None:
        job = current_job()
        assert job is not None
        seen.append((event.n, context.get(Tenant), plain.get(), job.id, job.attempt))


class Flaky(EventListener):
    """Fails its first two attempts; records current_job() in each, and in failed()."""

    tries = 3
    backoff = 0.05

    async def handle(self, event: Ping) -> None:
        job = current_job()
        assert job is not None
        seen.append(("flaky", job.id, job.attempt, job.event_name, job.listener))
        if job.attempt < 3:
            raise ValueError(f"attempt {job.attempt}")


class AlwaysFails(EventListener):
    tries = 2
    backoff = 0.0

    async def handle(self, event: Ping) -> None:
        raise ValueError("never works")

    async def failed(self, event: Ping, exc: BaseException) -> None:
        job = current_job()
        assert job is not None
        seen.append(("failed()", job.attempt, context.get(Tenant)))


class Stuck(EventListener):
    async def handle(self, event: Ping) -> None:
        gate[-1].set()
        await anyio.sleep_forever()


async def noop(event: Event) -> None:
    pass


@pytest.fixture(autouse=True)
def _clear() -> None:
    seen.clear()


async def test_jobs_cross_the_wire_only_context_keys_travel() -> None:
    bus = EventBus({Ping: [Record]}, driver=MemoryDriver(concurrency=2))
    async with bus:
        context.set(Tenant, "acme")
        plain.set("set by the dispatcher")  # a plain ContextVar: not on the wire
        for n in range(5):
            await bus.dispatch(Ping(n=n))
        await bus.join()
    assert sorted(s[:3] for s in seen) == [(n, "acme", "unset") for n in range(5)]
    assert len({s[3] for s in seen}) == 5 and {s[4] for s in seen} == {1}
    assert bus.stats.succeeded == 5 and bus.stats.queued == 0


async def test_retries_keep_the_job_id_and_count_attempts() -> None:
    driver = MemoryDriver()
    bus = EventBus({Ping: [Flaky]}, driver=driver)
    async with bus:
        await bus.dispatch(Ping(n=1))
        await bus.join()
    ids = {s[1] for s in seen}
    assert len(ids) == 1 and [s[2] for s in seen] == [1, 2, 3]
    assert seen[0][3:] == ("ping", "test_memory_driver.Flaky")
    assert bus.stats.retried == 2 and bus.stats.succeeded == 1 and not driver.dead


async def test_last_failure_reports_in_the_jobs_context_and_keeps_it_dead() -> None:
    driver = MemoryDriver(keep_dead=1)
    bus = EventBus({Ping: [AlwaysFails]}, driver=driver)
    async with bus:
        context.set(Tenant, "t1")
        await bus.dispatch(Ping(n=1))
        await bus.dispatch(Ping(n=2))
        await bus.join()
    assert seen == [("failed()", 2, "t1"), ("failed()", 2, "t1")]
    assert bus.stats.failed == 2 and driver.dead_count == 2 and len(driver.dead) == 1
    dead = driver.dead[0]
    assert dead.reason == dead.headers[REASON_HEADER] == "failed"
    assert dead.headers[ERROR_TYPE_HEADER] == "builtins.ValueError"
    assert dead.headers[ATTEMPTS_HEADER] == 2
    assert b'"attempt":2' in dead.body


async def test_drain_timeout_reports_the_unfinished_job_as_dropped() -> None:
    gate.append(anyio.Event())
    bus = EventBus({Ping: [Stuck]}, driver=MemoryDriver(drain_timeout=0.05))
    with anyio.fail_after(10):
        async with bus:
            await bus.dispatch(Ping(n=1))
            await gate[-1].wait()
    assert bus.stats.dropped == 1 and bus.stats.running == 0


async def test_dispatch_outside_async_with_bus_raises() -> None:
    bus = EventBus({Ping: [Record]}, driver=MemoryDriver())
    with pytest.raises(FarmNotRunning, match="async with bus"):
        await bus.dispatch(Ping(n=1))


async def test_oversized_message_is_refused_at_dispatch() -> None:
    bus = EventBus({Blob: [noop]}, driver=MemoryDriver(max_message_size=500))
    async with bus:
        with pytest.raises(EventTooLarge, match=r"over max_message_size=500.*MemoryDriver"):
            await bus.dispatch(Blob(payload="x" * 600))
    assert bus.stats.dispatched == 0


async def test_a_locals_listener_is_refused_at_registration() -> None:
    async def local(event: Ping) -> None:
        pass

    bus = EventBus(driver=MemoryDriver())
    with pytest.raises(RegistrationError, match=r"<locals>.*a memory worker .*module level"):
        bus.listen(Ping)(local)
