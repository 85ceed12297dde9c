"""Issue 10 (defects 2, 4, 7, 8, 11): the async farm never dies, deadlocks or stalls the loop."""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import time
import weakref
from contextvars import ContextVar
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from eventbus import Event, EventBus, ListenerBaseException, RegistrationError
from eventbus._log import logger as eventbus_logger

pytestmark = pytest.mark.anyio


class E(Event):
    n: int = 0


class Parent(Event):
    n: int = 0


class Child(Event):
    n: int = 0


class Many(Event):
    n: int = 0


def dropped(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith("dropped ")]


# --- 2 and 8: what a listener raises never ends the pool ---------------------------------


async def test_a_listener_raising_cancelled_error_fails_and_the_pool_keeps_running() -> None:
    # The repro: on 0.1 this hangs at 101 dispatches with 0 jobs run.
    failures: list[BaseException] = []
    ran: list[int] = []

    class L:
        async def handle(self, event: E) -> None:
            if event.n == 0:
                raise asyncio.CancelledError()
            ran.append(event.n)

        async def failed(self, event: E, exc: BaseException) -> None:
            failures.append(exc)

    bus = EventBus({E: [L]}, max_queue=100)
    with anyio.fail_after(10):
        async with bus:
            await bus.dispatch(E(n=0))
            for n in range(1, 1001):
                await bus.dispatch(E(n=n))
    assert sorted(ran) == list(range(1, 1001))
    assert (bus.stats.succeeded, bus.stats.failed, bus.stats.dropped) == (1000, 1, 0)
    (failure,) = failures
    assert isinstance(failure, ListenerBaseException)
    assert type(failure.original) is asyncio.CancelledError
    assert failure.__cause__ is failure.original


@pytest.mark.parametrize(
    "raised",
    [asyncio.CancelledError, GeneratorExit, BaseException],
    ids=["CancelledError", "GeneratorExit", "BaseException"],
)
async def test_a_non_exit_base_exception_is_a_failure_retried_per_policy(
    raised: type[BaseException], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="eventbus")
    bus = EventBus(max_concurrency=2)
    attempts: list[int] = []
    others: list[int] = []

    @bus.listen(E, tries=2)
    async def flaky(event: E) -> None:
        attempts.append(event.n)
        if len(attempts) == 1:
            await anyio.lowlevel.checkpoint()  # raised from a resumed step, not the first
            raise raised()

    @bus.listen(Parent, tries=1)
    async def always(event: Parent) -> None:
        others.append(event.n)
        raise raised()

    with anyio.fail_after(10):
        async with bus:
            await bus.dispatch(E(n=1))
            await bus.dispatch(Parent(n=2))
            await bus.join()
            await bus.dispatch(Parent(n=3))  # the pool is still there
    assert attempts == [1, 1]
    assert others == [2, 3]
    assert (bus.stats.succeeded, bus.stats.failed, bus.stats.retried) == (1, 2, 1)
    failed = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(failed) == 2
    for record in failed:
        assert record.exc_info is not None
        assert isinstance(record.exc_info[1], ListenerBaseException)
        assert type(record.exc_info[1].original) is raised


async def test_a_listener_cancelling_its_own_task_is_its_failure(anyio_backend: str) -> None:
    if anyio_backend != "asyncio":
        pytest.skip("Task.cancel() is asyncio's; trio listeners cannot cancel their task")
    bus = EventBus(max_concurrency=1, drain_timeout=5)
    attempts = 0
    later: list[int] = []
    hung = anyio.Event()

    @bus.listen(E, tries=2)
    async def rude(event: E) -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
            await anyio.sleep(0)

    @bus.listen(Parent)
    async def after(event: Parent) -> None:
        task = asyncio.current_task()
        assert task is not None
        later.append(task.cancelling())  # no cancel request left on the worker
        if event.n == 2:
            with anyio.move_on_after(0.01):  # the worker's own cancel scopes still work
                hung.set()
                await anyio.sleep_forever()

    with anyio.fail_after(10):
        async with bus:
            await bus.dispatch(E())
            await bus.dispatch(Parent(n=1))
            await bus.dispatch(Parent(n=2))
            await bus.join()
    assert attempts == 2
    assert later == [0, 0]
    assert hung.is_set()
    assert (bus.stats.succeeded, bus.stats.failed, bus.stats.retried) == (3, 0, 1)


async def test_dispatch_now_reports_a_raised_cancelled_error_in_its_exception_group() -> None:
    bus = EventBus()
    ran: list[str] = []

    @bus.listen(E)
    async def leaky(event: E) -> None:
        raise asyncio.CancelledError()

    @bus.listen(E)
    async def generator_exit(event: E) -> None:
        await anyio.lowlevel.checkpoint()
        raise GeneratorExit

    @bus.listen(E)
    async def fine(event: E) -> None:
        ran.append("fine")

    with pytest.raises(ExceptionGroup) as info:
        await bus.dispatch_now(E())
    await anyio.lowlevel.checkpoint()  # the caller was not cancelled
    assert ran == ["fine"]
    errors = info.value.exceptions
    assert [type(e) for e in errors] == [ListenerBaseException, ListenerBaseException]
    assert [type(e.original) for e in errors] == [  # type: ignore[attr-defined]
        asyncio.CancelledError,
        GeneratorExit,
    ]
    assert "raised by listener" in errors[0].__notes__[0]
    assert bus.stats.failed == 2


async def test_dispatch_now_lets_a_keyboard_interrupt_through_unwrapped() -> None:
    bus = EventBus()

    @bus.listen(E)
    async def interrupt(event: E) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await bus.dispatch_now(E())
    assert bus.stats.running == 0


@pytest.mark.parametrize("raised", [KeyboardInterrupt, SystemExit])
async def test_keyboard_interrupt_from_a_listener_stops_the_farm_and_reraises_unwrapped(
    raised: type[BaseException], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="eventbus")
    bus = EventBus(max_concurrency=1, drain_timeout=5)
    ran: list[int] = []
    body: list[str] = []

    @bus.listen(E)
    async def work(event: E) -> None:
        if event.n == 0:
            raise raised()
        await anyio.lowlevel.checkpoint()
        ran.append(event.n)

    with anyio.fail_after(10):
        with pytest.raises(raised):  # the exception itself, no BaseExceptionGroup around it
            async with bus:
                await bus.dispatch(E(n=0))
                for n in range(1, 21):
                    await bus.dispatch(E(n=n))
                try:
                    await anyio.sleep_forever()  # like a server: the stop cancels it
                finally:
                    body.append("left")
    assert body == ["left"]
    assert ran == list(range(1, 21))  # accepted before the stop: drained
    assert (bus.stats.succeeded, bus.stats.dropped, bus.stats.failed) == (20, 1, 0)
    (record,) = dropped(caplog)
    assert record.listener.endswith("work")  # type: ignore[attr-defined]
    assert f"it raised {raised.__name__}, which stops the farm" in record.getMessage()
    assert "drain deadline" not in record.getMessage()


async def test_jobs_left_after_a_keyboard_interrupt_are_dropped_with_the_true_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="eventbus")
    bus = EventBus(max_concurrency=2, drain_timeout=0.2)
    stuck = anyio.Event()

    @bus.listen(Parent)
    async def hang(event: Parent) -> None:
        stuck.set()
        await anyio.sleep_forever()

    @bus.listen(E)
    async def interrupt(event: E) -> None:
        raise KeyboardInterrupt

    with anyio.fail_after(10):
        with pytest.raises(KeyboardInterrupt):
            async with bus:
                await bus.dispatch(Parent())
                await stuck.wait()
                await bus.dispatch(E())
                await anyio.sleep_forever()
    records = {r.listener.rsplit(".", 1)[-1]: r.getMessage() for r in dropped(caplog)}  # type: ignore[attr-defined]
    assert set(records) == {"hang", "interrupt"}
    assert "the farm stopped: KeyboardInterrupt raised by listener" in records["hang"]
    assert records["hang"].endswith("and the drain deadline passed")
    assert bus.stats.dropped == 2


# --- 4: no deadlock on the farm's own follow-ups; the drain always ends -----------------


async def test_listeners_dispatching_into_a_full_queue_never_deadlock_the_farm() -> None:
    # The repro: on 0.1 this stops after ~14 jobs, forever.
    leaves: list[int] = []
    peak = 0

    class FanOut:
        async def handle(self, event: Parent) -> None:
            await anyio.lowlevel.checkpoint()  # some I/O first: all 4 workers are in here
            await bus.dispatch(Child(n=event.n))

    class Leaf:
        async def handle(self, event: Child) -> None:
            nonlocal peak
            peak = max(peak, bus.stats.queued)
            leaves.append(event.n)

    bus = EventBus({Parent: [FanOut], Child: [Leaf]}, max_concurrency=4, max_queue=10)
    with anyio.fail_after(10):
        async with bus:
            for n in range(500):
                await bus.dispatch(Parent(n=n))
                peak = max(peak, bus.stats.queued)
            await bus.join()
    assert sorted(leaves) == list(range(500))
    assert bus.stats.succeeded == 1000
    assert peak <= 10 + 1  # max_queue, plus the one follow-up of the one worker not waiting


async def test_a_follow_up_waits_for_room_while_another_worker_can_make_it() -> None:
    bus = EventBus(max_concurrency=2, max_queue=1)
    queued: list[int] = []

    @bus.listen(Parent)
    async def fan(event: Parent) -> None:
        for n in range(5):
            await bus.dispatch(Child(n=n))  # the other worker is free: wait, don't overflow
            queued.append(bus.stats.queued)

    @bus.listen(Child)
    async def leaf(event: Child) -> None:
        pass

    with anyio.fail_after(10):
        async with bus:
            await bus.dispatch(Parent())
    assert len(queued) == 5
    assert max(queued) <= 1
    assert bus.stats.succeeded == 6


async def test_an_enclosing_cancel_scope_ends_an_unbounded_drain(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="eventbus")
    bus = EventBus(drain_timeout=None)
    started = anyio.Event()
    scope = anyio.CancelScope()

    @bus.listen(E)
    async def stuck(event: E) -> None:
        started.set()
        with anyio.move_on_after(5):  # only so 0.1 (which ignores the cancel) cannot hang
            await anyio.sleep_forever()

    async def cancel_during_the_drain() -> None:
        await started.wait()
        await anyio.wait_all_tasks_blocked()  # the body has left: the drain waits
        scope.cancel()

    began = time.monotonic()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(cancel_during_the_drain)
            with scope:
                async with bus:
                    await bus.dispatch(E())
                    await started.wait()
    assert scope.cancelled_caught
    assert time.monotonic() - began < 4
    assert bus.stats.dropped == 1
    (record,) = dropped(caplog)
    assert record.state == "running"  # type: ignore[attr-defined]
    assert "cancelled during the drain" in record.getMessage()


# --- 7: the farm's time on the loop between yields does not grow with max_concurrency ----


async def test_a_backlog_of_cpu_bound_jobs_does_not_stall_the_loop() -> None:
    jobs = 5000  # x 0.1 ms: on 0.1 all of them ran in one loop iteration (0.5 s and more)
    bus = EventBus(max_concurrency=100, max_queue=10_000)
    ran = 0
    stamps: list[float] = []  # each time the probe task got the loop
    probing = anyio.Event()

    @bus.listen(E)
    async def cpu_bound(event: E) -> None:
        nonlocal ran
        start = time.perf_counter()
        while time.perf_counter() - start < 1e-4:
            pass
        ran += 1

    async def probe() -> None:
        probing.set()
        while ran < jobs:
            await anyio.lowlevel.checkpoint()
            stamps.append(time.perf_counter())

    with anyio.fail_after(30):
        async with bus, anyio.create_task_group() as tg:
            tg.start_soon(probe)
            await probing.wait()
            for n in range(jobs):
                await bus.dispatch(E(n=n))  # never yields: the whole backlog is queued
            queued = time.perf_counter()  # the farm has the loop from here on
            await bus.join()
    assert ran == jobs
    timeline = [queued] + [t for t in stamps if t > queued]
    stall = max(b - a for a, b in itertools.pairwise(timeline))
    assert stall < 0.15, f"the loop stalled for {stall * 1000:.0f} ms"
    assert len(timeline) > 20  # the probe ran all along


# --- 11: idle workers pin nothing; impossible registrations are refused ---------------


class Session:
    """Stands for a DB session a listener keeps in a ContextVar."""


session_var: ContextVar[Session | None] = ContextVar("hardening_session", default=None)


async def test_an_idle_worker_holds_no_reference_to_its_last_job(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(eventbus_logger, "disabled", True)  # log records would pin the error
    bus = EventBus(max_concurrency=2)
    refs: list[weakref.ref[Any]] = []

    class Boom(Exception):
        pass

    @bus.listen(E)
    async def keeps_things(event: E) -> None:
        session = Session()
        session_var.set(session)
        refs.append(weakref.ref(session))
        await anyio.lowlevel.checkpoint()
        if event.n == 1:
            error = Boom()
            refs.append(weakref.ref(error))
            raise error

    with anyio.fail_after(10):
        async with bus:
            for n in (0, 1):
                event = E(n=n)
                refs.append(weakref.ref(event))
                await bus.dispatch(event)
            del event
            await bus.join()
            await anyio.wait_all_tasks_blocked()  # both workers idle again
            gc.collect()
            alive = [ref() for ref in refs if ref() is not None]
            assert alive == []
    assert bus.stats.failed == 1


def test_an_event_with_more_listeners_than_max_queue_is_refused_with_on_full_raise() -> None:
    async def one(event: Many) -> None: ...
    async def two(event: Many) -> None: ...
    async def three(event: Many) -> None: ...

    with pytest.raises(RegistrationError, match=r"Many: .* would reach 3 listeners") as info:
        EventBus({Many: [one, two, three]}, max_queue=2, on_full="raise")
    assert "max_queue to at least 3 or use on_full='wait'" in str(info.value)

    bus = EventBus({Event: [one]}, max_queue=1, on_full="raise")
    with pytest.raises(RegistrationError, match="would reach 2 listeners"):
        bus.listen(Many)(two)  # Many also hears the listener on its base class
    assert bus.listeners_for(Many) == [one]


async def test_more_listeners_than_max_queue_still_run_with_on_full_wait() -> None:
    ran: list[str] = []

    def make(name: str) -> Any:
        async def listener(event: Many) -> None:
            ran.append(name)

        listener.__qualname__ = name
        return listener

    bus = EventBus({Many: [make(f"l{i}") for i in range(5)]}, max_queue=2, on_full="wait")
    with anyio.fail_after(10):
        async with bus:
            await bus.dispatch(Many())
    assert sorted(ran) == [f"l{i}" for i in range(5)]
