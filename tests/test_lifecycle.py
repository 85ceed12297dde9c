"""Requirement 1: `async with bus` starts the farm, leaving it drains; lifespan; join."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest
from fixtures_core.gate import gated_listener

from eventbus import Event, EventBus, FarmNotRunning

pytestmark = pytest.mark.anyio


class Ping(Event):
    n: int = 0


class Stuck(Event):
    n: int = 0


class FollowUp(Event):
    n: int = 0


def recording(bus: EventBus) -> list[int]:
    """Register on ``bus`` a Ping listener that suspends once, then records ``n``."""
    seen: list[int] = []

    @bus.listen(Ping)
    async def record(event: Ping) -> None:
        await anyio.sleep(0)  # a job that suspends: draining must resume it, not just start it
        seen.append(event.n)

    return seen


def dropped_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith("dropped ")]


async def test_normal_exit_runs_every_queued_job() -> None:
    bus = EventBus(max_concurrency=3)
    seen = recording(bus)

    with anyio.fail_after(5):
        async with bus:
            for n in range(500):
                await bus.dispatch(Ping(n=n))
            assert seen == []  # dispatch only queued them: it never yields while there is room
    assert sorted(seen) == list(range(500))
    assert bus.stats.succeeded == 500
    assert bus.stats.queued == bus.stats.running == bus.stats.dropped == 0


async def test_exit_by_exception_still_drains_and_reraises_the_same_exception() -> None:
    bus = EventBus(max_concurrency=2)
    seen = recording(bus)

    class Boom(Exception):
        pass

    with anyio.fail_after(5):
        # The caller's own exception, not an ExceptionGroup from the farm's task group.
        with pytest.raises(Boom):
            async with bus:
                for n in range(100):
                    await bus.dispatch(Ping(n=n))
                raise Boom
    assert sorted(seen) == list(range(100))


async def test_the_farm_starts_again_after_an_exception_exit() -> None:
    bus = EventBus()
    seen = recording(bus)

    with anyio.fail_after(5):
        with pytest.raises(KeyError, match="left by an error"):
            async with bus:
                await bus.dispatch(Ping(n=1))
                raise KeyError("left by an error")
        async with bus:
            await bus.dispatch(Ping(n=2))
    assert seen == [1, 2]


async def test_entering_a_running_bus_twice_is_refused() -> None:
    bus = EventBus()
    async with bus:
        with pytest.raises(RuntimeError, match="already running"):
            async with bus:
                pass


async def test_drain_timeout_cancels_and_reports_every_remaining_job(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="eventbus")
    bus = EventBus(max_concurrency=2, drain_timeout=0.05)
    started = 0
    both_running = anyio.Event()
    cancelled: list[int] = []

    @bus.listen(Stuck)
    async def hang(event: Stuck) -> None:
        nonlocal started
        started += 1
        if started == 2:
            both_running.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.append(event.n)
            raise

    with anyio.fail_after(5):
        async with bus:
            for n in range(5):
                await bus.dispatch(Stuck(n=n))
            await both_running.wait()
            assert bus.stats.running == 2 and bus.stats.queued == 3

    assert sorted(cancelled) == [0, 1]  # the running ones were cancelled, not abandoned
    stats = bus.stats
    assert (stats.dropped, stats.succeeded, stats.failed) == (5, 0, 0)
    assert (stats.queued, stats.running) == (0, 0)
    records = dropped_records(caplog)
    assert len(records) == 5
    assert sorted(r.state for r in records) == ["queued"] * 3 + ["running"] * 2  # type: ignore[attr-defined]
    for record in records:
        assert record.event_name == "stuck"  # type: ignore[attr-defined]
        assert record.listener.endswith("hang")  # type: ignore[attr-defined]
        assert record.attempt == 1  # type: ignore[attr-defined]
    assert any("drain timed out" in r.getMessage() for r in caplog.records)


async def test_drain_timeout_reports_a_job_waiting_to_retry(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="eventbus")
    bus = EventBus(drain_timeout=0.05)
    first_attempt = anyio.Event()

    @bus.listen(Ping, tries=3, backoff=60)
    async def flaky(event: Ping) -> None:
        first_attempt.set()
        raise RuntimeError("down")

    with anyio.fail_after(5):
        async with bus:
            await bus.dispatch(Ping())
            await first_attempt.wait()
    assert bus.stats.retried == 1
    assert bus.stats.dropped == 1
    assert bus.stats.queued == 0
    (record,) = dropped_records(caplog)
    assert record.state == "waiting to retry"  # type: ignore[attr-defined]
    assert record.attempt == 2  # type: ignore[attr-defined]


async def test_drain_timeout_none_waits_for_every_job() -> None:
    bus = EventBus(drain_timeout=None)
    release = anyio.Event()
    done: list[int] = []

    @bus.listen(Ping)
    async def slow(event: Ping) -> None:
        await release.wait()
        done.append(event.n)

    async def release_later() -> None:
        await anyio.wait_all_tasks_blocked()
        release.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg, bus:
            await bus.dispatch(Ping(n=1))
            tg.start_soon(release_later)
    assert done == [1]
    assert bus.stats.dropped == 0


async def test_dispatch_after_exit_raises_farm_not_running() -> None:
    bus = EventBus()

    @bus.listen(Ping)
    async def noop(event: Ping) -> None:
        pass

    async with bus:
        pass
    with pytest.raises(FarmNotRunning, match="async with bus"):
        await bus.dispatch(Ping())
    assert bus.stats.dispatched == 0


async def test_follow_up_dispatched_by_a_listener_while_draining_still_runs() -> None:
    bus = EventBus(max_concurrency=2)
    done: list[str] = []

    @bus.listen(Ping)
    async def chain(event: Ping) -> None:
        await anyio.sleep(0)
        await bus.dispatch(FollowUp(n=event.n))
        done.append("ping")

    @bus.listen(FollowUp)
    async def follow(event: FollowUp) -> None:
        done.append("follow")

    with anyio.fail_after(5):
        async with bus:
            for n in range(20):
                await bus.dispatch(Ping(n=n))
    assert done.count("ping") == 20
    assert done.count("follow") == 20
    assert bus.stats.failed == 0
    assert bus.stats.dispatched == 40


async def test_outside_producer_waiting_for_room_is_told_when_the_farm_stops() -> None:
    bus = EventBus(max_concurrency=1, max_queue=1)
    gate, started, ran = gated_listener(bus, Ping)
    refused: list[BaseException] = []

    async def producer() -> None:
        try:
            await bus.dispatch(Ping(n=3))
        except FarmNotRunning as exc:
            refused.append(exc)
        gate.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg, bus:
            await bus.dispatch(Ping(n=1))
            await started.wait()
            await bus.dispatch(Ping(n=2))  # fills the queue
            tg.start_soon(producer)
            await anyio.wait_all_tasks_blocked()
            assert not refused  # still waiting for room
    assert len(refused) == 1
    assert "was not queued" in str(refused[0])
    assert ran == [1, 2]  # one worker: in queue order
    assert bus.stats.dispatched == 2
    assert bus.stats.dropped == 0


async def test_an_event_stopped_half_queued_reports_the_rest_as_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="eventbus")
    bus = EventBus(max_concurrency=1, max_queue=1)
    gate1, gate2 = anyio.Event(), anyio.Event()
    stuck_started, fill_started = anyio.Event(), anyio.Event()
    ran: list[str] = []

    @bus.listen(Stuck)
    async def blocker(event: Stuck) -> None:
        stuck_started.set()
        await gate1.wait()

    @bus.listen(FollowUp)
    async def filler(event: FollowUp) -> None:
        fill_started.set()
        await gate2.wait()

    @bus.listen(Ping)
    async def first(event: Ping) -> None:
        ran.append("first")

    @bus.listen(Ping)
    async def second(event: Ping) -> None:
        ran.append("second")

    async def release_fill() -> None:
        await anyio.wait_all_tasks_blocked()
        gate2.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg, bus:
            await bus.dispatch(Stuck())
            await stuck_started.wait()
            await bus.dispatch(FollowUp())  # the queue (1 slot) is full
            tg.start_soon(bus.dispatch, Ping())  # two jobs, waits for room
            await anyio.wait_all_tasks_blocked()
            gate1.set()  # the worker takes FollowUp: `first` gets the slot
            await fill_started.wait()
            await anyio.wait_all_tasks_blocked()
            assert bus.stats.queued == 1  # `first`; `second` still waits
            tg.start_soon(release_fill)
    assert ran == ["first"]
    (record,) = dropped_records(caplog)
    assert record.listener.endswith("second")  # type: ignore[attr-defined]
    assert record.state == "not queued"  # type: ignore[attr-defined]
    assert "the farm stopped" in record.getMessage()
    assert bus.stats.dropped == 1
    assert bus.stats.dispatched == 3


async def test_join_waits_for_every_job_queued_so_far() -> None:
    bus = EventBus(max_concurrency=4)
    done: list[int] = []

    @bus.listen(Ping, tries=2)
    async def work(event: Ping) -> None:
        for _ in range(3):
            await anyio.sleep(0)
        if event.n % 10 == 0 and event.n not in failed_once:
            failed_once.add(event.n)
            raise RuntimeError("retry me")
        done.append(event.n)

    failed_once: set[int] = set()
    with anyio.fail_after(5):
        async with bus:
            await bus.join()  # nothing queued: returns at once
            for n in range(200):
                await bus.dispatch(Ping(n=n))
            await bus.join()
            assert sorted(done) == list(range(200))  # retries included
            assert bus.stats.queued == bus.stats.running == 0
            for n in range(200, 250):
                await bus.dispatch(Ping(n=n))
            await bus.join()
            assert sorted(done) == list(range(250))


async def test_lifespan_works_as_an_app_lifespan() -> None:
    bus = EventBus()
    seen = recording(bus)
    app: Any = object()

    with anyio.fail_after(5):
        async with bus.lifespan(app):  # what FastAPI(lifespan=bus.lifespan) does
            await bus.dispatch(Ping(n=1))  # as a route handler would
            await bus.dispatch(Ping(n=2))
    assert sorted(seen) == [1, 2]
    with pytest.raises(FarmNotRunning):
        await bus.dispatch(Ping(n=3))
    async with bus.lifespan(app):  # a restarted app starts it again
        await bus.dispatch(Ping(n=3))
    assert sorted(seen) == [1, 2, 3]


async def test_cancelling_the_caller_after_dispatch_does_not_cancel_its_jobs() -> None:
    bus = EventBus()
    gate = anyio.Event()
    done: list[int] = []

    @bus.listen(Ping)
    async def slow(event: Ping) -> None:
        await gate.wait()
        done.append(event.n)

    async def request_handler(task_status: Any) -> None:
        await bus.dispatch(Ping(n=1))
        await bus.dispatch(Ping(n=2))
        task_status.started()
        await anyio.sleep_forever()

    with anyio.fail_after(5):
        async with bus:
            async with anyio.create_task_group() as tg:
                await tg.start(request_handler)
                tg.cancel_scope.cancel()  # the client went away
            gate.set()
            await bus.join()
    assert sorted(done) == [1, 2]
    assert bus.stats.dropped == 0


async def test_cancelling_the_host_still_drains() -> None:
    bus = EventBus()
    done = recording(bus)

    with anyio.fail_after(5):
        with anyio.CancelScope() as scope:
            async with bus:
                for n in range(10):
                    await bus.dispatch(Ping(n=n))
                scope.cancel()
                await anyio.sleep_forever()
    assert scope.cancelled_caught
    assert sorted(done) == list(range(10))
