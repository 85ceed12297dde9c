"""Issue 10, defects 5 and 6: thread listeners obey their timeout; failure hooks are bounded.

A plain ``def`` listener runs in a worker thread, which cannot be killed: its attempt fails
with ``TimeoutError`` when the timeout passes, the thread is abandoned, and its late end is
logged. ``failed()`` and ``on_failure`` are bounded by the listener's timeout, else the bus's
``hook_timeout``. The threads here block on ``threading.Event`` gates the test opens (in a
``finally``, so a failing run ends quickly); the only real waits are the timeouts under test.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import ClassVar

import anyio
import pytest
from rabbitmq_app.harness import URL_, drain

from eventbus import Event, EventBus, EventListener, Listener
from eventbus.drivers.rabbitmq import RabbitMQDriver
from eventbus.worker import Worker

pytestmark = pytest.mark.anyio

#: How long a gated thread waits at most, so a run of these tests against the old code
#: (where nothing is abandoned) ends instead of hanging. Far above every timeout here.
GATE_LIMIT = 30.0

#: A guard against hangs around each test body, generous for a loaded machine.
LIMIT = 15.0

#: asyncio may fire a timer up to its clock resolution early.
CLOCK_SLACK = 0.01


class Job(Event):
    n: int = 0


@pytest.fixture(params=["async_farm", "sync"])
def driver(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def records(caplog: pytest.LogCaptureFixture, level: int, text: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "eventbus" and r.levelno == level and text in r.getMessage()
    ]


async def late_end(caplog: pytest.LogCaptureFixture, what: str) -> logging.LogRecord:
    """The WARNING an abandoned thread logs, from its own thread, when it ends.

    Each test waits for its own, so no thread outlives the test that abandoned it.
    """
    text = f"abandoned thread of {what}"
    with anyio.fail_after(LIMIT):
        while not (found := records(caplog, logging.WARNING, text)):
            await anyio.sleep(0.01)
    (late,) = found
    return late


# --- defect 5: timeouts on thread listeners ---------------------------------------------


async def test_a_thread_listener_fails_with_timeout_when_it_passes_and_its_late_end_is_logged(
    driver: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="eventbus")
    gate = threading.Event()
    failures: list[tuple[BaseException, float]] = []
    failed = anyio.Event()

    async def on_failure(event: Event, listener: Listener, exc: BaseException) -> None:
        failures.append((exc, time.monotonic()))
        failed.set()

    bus = EventBus(driver=driver, on_failure=on_failure)

    @bus.listen(Job, timeout=0.3)
    def stuck(event: Job) -> None:
        gate.wait(GATE_LIMIT)

    try:
        with anyio.fail_after(LIMIT):
            async with bus:
                dispatched_at = time.monotonic()
                await bus.dispatch(Job(n=7))
                await failed.wait()
                assert not gate.is_set()  # the thread is still in the listener
    finally:
        gate.set()
    ((exc, failed_at),) = failures
    assert isinstance(exc, TimeoutError)
    assert "cannot be killed" in str(exc)
    assert 0.3 - CLOCK_SLACK <= failed_at - dispatched_at < 5.0
    assert (bus.stats.succeeded, bus.stats.failed) == (0, 1)
    late = await late_end(caplog, bus.listeners()[0].name)
    assert "returned" in late.getMessage()
    assert (late.event_name, late.listener, late.attempt) == ("job", bus.listeners()[0].name, 1)  # type: ignore[attr-defined]


async def test_a_thread_listener_times_out_in_dispatch_now(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="eventbus")
    gate = threading.Event()
    bus = EventBus()

    class Stuck(EventListener):
        timeout = 0.3

        def handle(self, event: Job) -> None:
            gate.wait(GATE_LIMIT)

    bus.register({Job: [Stuck]})
    try:
        with anyio.fail_after(LIMIT), pytest.raises(ExceptionGroup) as caught:
            await bus.dispatch_now(Job())
        assert not gate.is_set()
    finally:
        gate.set()
    (exc,) = caught.value.exceptions
    assert isinstance(exc, TimeoutError)
    assert bus.stats.failed == 1
    assert (await late_end(caplog, bus.listeners()[0].name)).attempt == 1  # type: ignore[attr-defined]


async def test_a_timed_out_thread_that_raises_later_is_logged_with_the_exception(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="eventbus")
    gate = threading.Event()
    bus = EventBus(driver="sync")

    @bus.listen(Job, timeout=0.2)
    def stuck_then_raises(event: Job) -> None:
        gate.wait(GATE_LIMIT)
        raise LookupError("after the timeout")

    try:
        with anyio.fail_after(LIMIT):
            await bus.dispatch(Job())
        assert bus.stats.failed == 1 and not gate.is_set()
    finally:
        gate.set()
    late = await late_end(caplog, bus.listeners()[0].name)
    assert "raised LookupError" in late.getMessage()
    assert late.exc_info is not None and isinstance(late.exc_info[1], LookupError)


async def test_every_worker_of_the_farm_gets_a_thread() -> None:
    """100 workers in sync listeners at once: none waits for (or times out without) a thread."""
    workers = 100
    all_in = threading.Barrier(workers)
    bus = EventBus(max_concurrency=workers)

    @bus.listen(Job, timeout=GATE_LIMIT)
    def meet_the_others(event: Job) -> None:
        all_in.wait(LIMIT)  # returns only once every job is in a thread at once

    try:
        with anyio.fail_after(2 * LIMIT):
            async with bus:
                for n in range(workers):
                    await bus.dispatch(Job(n=n))
                await bus.join()
    finally:
        all_in.abort()
    assert (bus.stats.succeeded, bus.stats.failed) == (workers, 0)


async def test_a_drain_ends_at_its_deadline_with_a_thread_listener_stuck(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="eventbus")
    gate = threading.Event()
    started = anyio.Event()
    bus = EventBus(drain_timeout=0.5)

    @bus.listen(Job)
    def stuck(event: Job) -> None:  # no timeout of its own: only the drain deadline ends it
        anyio.from_thread.run_sync(started.set)
        gate.wait(GATE_LIMIT)

    try:
        with anyio.fail_after(LIMIT):
            async with bus:
                await bus.dispatch(Job())
                await started.wait()
                leaving = time.monotonic()
            drained = time.monotonic() - leaving
        assert not gate.is_set()
    finally:
        gate.set()
    assert 0.5 - CLOCK_SLACK <= drained < 5.0
    assert bus.stats.dropped == 1
    late = await late_end(caplog, bus.listeners()[0].name)
    assert late.listener == bus.listeners()[0].name  # type: ignore[attr-defined]


# --- defect 6: hanging hooks -------------------------------------------------------------


async def test_a_hanging_async_failed_hook_is_bounded_by_the_listener_timeout(
    driver: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="eventbus")
    reported: list[str] = []

    async def on_failure(event: Event, listener: Listener, exc: BaseException) -> None:
        reported.append(type(exc).__name__)

    bus = EventBus(driver=driver, on_failure=on_failure)

    class HangsInFailed(EventListener):
        timeout = 0.2

        async def handle(self, event: Job) -> None:
            raise RuntimeError("broken")

        async def failed(self, event: Job, exc: BaseException) -> None:
            await anyio.sleep_forever()

    bus.register({Job: [HangsInFailed]})
    with anyio.fail_after(LIMIT):
        async with bus:
            await bus.dispatch(Job())
            await bus.join()
    assert reported == ["RuntimeError"]  # on_failure still ran after failed() expired
    (expired,) = records(caplog, logging.ERROR, "did not return within 0.2s")
    assert "HangsInFailed.failed()" in expired.getMessage()
    assert "listener's timeout" in expired.getMessage()
    assert (expired.event_name, expired.listener, expired.attempt) == (  # type: ignore[attr-defined]
        "job",
        bus.listeners()[0].name,
        1,
    )


async def test_a_hanging_on_failure_is_bounded_by_hook_timeout_in_dispatch_now(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="eventbus")

    async def on_failure(event: Event, listener: Listener, exc: BaseException) -> None:
        await anyio.sleep_forever()

    bus = EventBus(on_failure=on_failure, hook_timeout=0.2)

    @bus.listen(Job)
    async def broken(event: Job) -> None:
        raise RuntimeError("broken")

    with anyio.fail_after(LIMIT), pytest.raises(ExceptionGroup):
        await bus.dispatch_now(Job())
    (expired,) = records(caplog, logging.ERROR, "did not return within 0.2s")
    assert expired.getMessage().startswith("on_failure for ")
    assert "hook_timeout" in expired.getMessage()
    assert expired.attempt == 1  # type: ignore[attr-defined]


async def test_a_plain_def_hook_runs_in_a_thread_bounded_and_its_late_end_is_logged(
    driver: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="eventbus")
    gate = threading.Event()
    hook_threads: list[int] = []

    def on_failure(event: Event, listener: Listener, exc: BaseException) -> None:
        hook_threads.append(threading.get_ident())
        gate.wait(GATE_LIMIT)  # blocking: on the event loop this would freeze everything

    bus = EventBus(driver=driver, on_failure=on_failure, hook_timeout=0.3)

    @bus.listen(Job)
    async def broken(event: Job) -> None:
        raise RuntimeError("broken")

    try:
        with anyio.fail_after(LIMIT):
            async with bus:
                await bus.dispatch(Job())
                await bus.join()
        assert not gate.is_set()
    finally:
        gate.set()
    assert hook_threads and hook_threads[0] != threading.get_ident()
    (expired,) = records(caplog, logging.ERROR, "did not return within 0.3s")
    assert expired.getMessage().startswith("on_failure for ")
    assert expired.listener == bus.listeners()[0].name  # type: ignore[attr-defined]
    late = await late_end(caplog, f"on_failure for {bus.listeners()[0].name}")
    assert late.attempt == 1  # type: ignore[attr-defined]


async def test_a_plain_def_failed_hook_is_bounded_too(
    driver: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="eventbus")
    gate = threading.Event()
    bus = EventBus(driver=driver, hook_timeout=0.2)

    class SyncFailed(EventListener):
        async def handle(self, event: Job) -> None:
            raise RuntimeError("broken")

        def failed(self, event: Job, exc: BaseException) -> None:  # type: ignore[override]
            gate.wait(GATE_LIMIT)

    bus.register({Job: [SyncFailed]})
    try:
        with anyio.fail_after(LIMIT):
            async with bus:
                await bus.dispatch(Job())
                await bus.join()
        assert not gate.is_set()
    finally:
        gate.set()
    assert bus.stats.failed == 1
    name = bus.listeners()[0].name
    assert records(caplog, logging.ERROR, f"{name}.failed() did not return within 0.2s")
    await late_end(caplog, f"{name}.failed()")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 0, -1.0, True, "10"], ids=repr)
async def test_hook_timeout_must_be_finite_and_positive(bad: object) -> None:
    make: Callable[[], EventBus] = lambda: EventBus(hook_timeout=bad)  # type: ignore[arg-type]  # noqa: E731
    with pytest.raises(ValueError, match=r"hook_timeout must be a finite number of seconds > 0"):
        make()


# --- the RabbitMQ worker: the same bounds (asyncio only, real broker) --------------------


async def run_worker_until_dead_lettered(bus: EventBus, queue: str) -> Worker:
    """Publish one Job, run an in-process worker until it dead-lettered it, stop it."""
    producer = EventBus({Job: bus.listeners_for(Job)}, driver=RabbitMQDriver(URL_, queue=queue))
    async with producer:
        await producer.dispatch(Job(n=1))
    worker = Worker(bus, concurrency=2, grace=0.5)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        with anyio.fail_after(LIMIT):
            while not worker.report.dead_lettered:  # a fact the worker records, polled
                await anyio.sleep(0.01)
    finally:
        stop.set()
        await task
    return worker


# Module level: the rabbitmq driver refuses listeners defined inside a function.
class WorkerStuck(EventListener):
    timeout = 0.3
    gates: ClassVar[list[threading.Event]] = []

    def handle(self, event: Job) -> None:
        self.gates[-1].wait(GATE_LIMIT)


class HangsInFailed(EventListener):
    timeout = 0.3  # bounds failed() too

    async def handle(self, event: Job) -> None:
        raise RuntimeError("broken")

    async def failed(self, event: Job, exc: BaseException) -> None:
        await anyio.sleep_forever()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_worker_times_out_a_thread_listener_and_dead_letters_it(
    queue: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="eventbus")
    gate = threading.Event()
    WorkerStuck.gates.append(gate)
    try:
        worker = await run_worker_until_dead_lettered(
            EventBus({Job: [WorkerStuck]}, driver=RabbitMQDriver(URL_, queue=queue)), queue
        )
        assert not gate.is_set()
    finally:
        gate.set()
    assert worker.report.failed == 1
    (dead,) = await drain(f"{queue}.dead")
    assert (dead.headers or {}).get("x-eventbus-error-type", "").endswith("ThreadTimeout")
    await late_end(caplog, "test_threads_and_hooks.WorkerStuck")


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_worker_bounds_a_hanging_failed_hook(
    queue: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="eventbus")
    bus = EventBus({Job: [HangsInFailed]}, driver=RabbitMQDriver(URL_, queue=queue))
    worker = await run_worker_until_dead_lettered(bus, queue)
    assert worker.report.failed == 1
    (expired,) = records(caplog, logging.ERROR, "HangsInFailed.failed() did not return")
    assert expired.attempt == 1  # type: ignore[attr-defined]
    assert len(await drain(f"{queue}.dead")) == 1
