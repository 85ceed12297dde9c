"""Requirement 5: per-listener tries, backoff and timeout; failed(); on_failure.

Each test runs on both queue drivers (the async farm and the inline sync driver) and on
both backends: the policy and the failure path are the bus's, not one driver's.
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any

import anyio
import pytest

from eventbus import Event, EventBus, EventListener, Listener

pytestmark = pytest.mark.anyio

#: asyncio may fire a timer up to its clock resolution early; far below any backoff here.
CLOCK_SLACK = 0.002


class Charge(Event):
    n: int = 0


class Other(Event):
    n: int = 0


@pytest.fixture(params=["async_farm", "sync"])
def driver(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def failure_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == logging.ERROR and r.exc_info]


async def test_a_listener_is_retried_until_it_succeeds(driver: str) -> None:
    bus = EventBus(driver=driver)
    attempts: list[int] = []

    @bus.listen(Charge, tries=3)
    async def flaky(event: Charge) -> None:
        attempts.append(len(attempts) + 1)
        if len(attempts) < 3:
            raise ConnectionError("gateway down")

    with anyio.fail_after(5):
        async with bus:
            await bus.dispatch(Charge())
            await bus.join()
    assert attempts == [1, 2, 3]
    stats = bus.stats
    assert (stats.succeeded, stats.failed, stats.retried, stats.dropped) == (1, 0, 2, 0)


async def test_after_the_last_try_failed_and_on_failure_get_the_last_exception(
    driver: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="eventbus")
    reported: list[tuple[Event, Listener, BaseException]] = []
    failed_calls: list[tuple[Charge, BaseException]] = []

    async def on_failure(event: Event, listener: Listener, exc: BaseException) -> None:
        await anyio.sleep(0)
        reported.append((event, listener, exc))

    bus = EventBus(driver=driver, on_failure=on_failure)

    @bus.listen(Charge)
    class ChargeCard(EventListener):
        tries = 3

        async def handle(self, event: Charge) -> None:
            raise ValueError(f"declined {event.n}")

        async def failed(self, event: Charge, exc: BaseException) -> None:
            failed_calls.append((event, exc))

    event = Charge(n=7)
    with anyio.fail_after(5):
        async with bus:
            await bus.dispatch(event)  # never raises for a listener's failure
            await bus.join()

    assert len(failed_calls) == 1
    assert failed_calls[0][0] == event
    assert str(failed_calls[0][1]) == "declined 7"
    ((ev, listener, exc),) = reported
    assert ev == event and listener.target is ChargeCard and exc is failed_calls[0][1]
    stats = bus.stats
    assert (stats.succeeded, stats.failed, stats.retried) == (0, 1, 2)

    (record,) = failure_records(caplog)
    assert record.event_name == "charge"  # type: ignore[attr-defined]
    assert record.listener.endswith("ChargeCard")  # type: ignore[attr-defined]
    assert record.attempt == 3  # type: ignore[attr-defined]
    assert record.exc_info is not None and record.exc_info[1] is exc
    retries = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.attempt for r in retries] == [1, 2]  # type: ignore[attr-defined]


async def test_a_sync_on_failure_callback_is_called(driver: str) -> None:
    reported: list[str] = []

    def on_failure(event: Event, listener: Listener, exc: BaseException) -> None:
        reported.append(f"{event.event_name}:{listener.name.rsplit('.', 1)[-1]}:{exc}")

    bus = EventBus(driver=driver, on_failure=on_failure)

    @bus.listen(Charge)
    def broken(event: Charge) -> None:  # a sync listener, run in a thread
        raise KeyError("card")

    async with bus:
        await bus.dispatch(Charge())
        await bus.join()
    assert reported == ["charge:broken:'card'"]


async def _attempt_times(driver: str, tries: int, backoff: float | Sequence[float]) -> list[float]:
    bus = EventBus(driver=driver)
    times: list[float] = []

    @bus.listen(Charge, tries=tries, backoff=backoff)
    async def always_fails(event: Charge) -> None:
        times.append(anyio.current_time())
        raise RuntimeError("nope")

    with anyio.fail_after(5):
        async with bus:
            await bus.dispatch(Charge())
            await bus.join()
    assert bus.stats.failed == 1
    return times


async def test_backoff_as_a_number_waits_before_every_retry(driver: str) -> None:
    times = await _attempt_times(driver, 3, 0.03)
    assert len(times) == 3
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(gap >= 0.03 - CLOCK_SLACK for gap in gaps), gaps


async def test_backoff_as_a_sequence_is_used_per_attempt_and_its_last_repeats(
    driver: str,
) -> None:
    times = await _attempt_times(driver, 4, [0.01, 0.05])
    assert len(times) == 4
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps[0] >= 0.01 - CLOCK_SLACK, gaps
    assert gaps[1] >= 0.05 - CLOCK_SLACK, gaps
    assert gaps[2] >= 0.05 - CLOCK_SLACK, gaps  # past the sequence: its last value


async def test_a_retry_waiting_out_its_backoff_does_not_hold_a_worker() -> None:
    bus = EventBus(max_concurrency=1, drain_timeout=0.05)
    first_failed = anyio.Event()
    other_ran = anyio.Event()

    @bus.listen(Charge, tries=2, backoff=60)
    async def slow_retry(event: Charge) -> None:
        first_failed.set()
        raise RuntimeError("later")

    @bus.listen(Other)
    async def other(event: Other) -> None:
        other_ran.set()

    with anyio.fail_after(5):
        async with bus:
            await bus.dispatch(Charge())
            await first_failed.wait()
            await bus.dispatch(Other())
            await other_ran.wait()  # the only worker is free during the 60 s backoff
            assert bus.stats.queued == 1  # the retry, waiting
    assert bus.stats.dropped == 1  # reported when the drain deadline passed


async def test_retries_re_enter_the_queue_past_max_queue() -> None:
    # The only worker fails a job while the queue is full: if its retry waited for room,
    # which only that worker can make, the pool would deadlock. Retries were accepted.
    bus = EventBus(max_concurrency=1, max_queue=1)
    gate = anyio.Event()
    started = anyio.Event()
    runs: list[int] = []

    @bus.listen(Charge, tries=3)
    async def flaky(event: Charge) -> None:
        started.set()
        await gate.wait()
        runs.append(event.n)
        if runs.count(event.n) < 3:
            raise RuntimeError("again")

    with anyio.fail_after(5):
        async with bus:
            await bus.dispatch(Charge(n=1))
            await started.wait()
            await bus.dispatch(Charge(n=2))  # the queue is full
            gate.set()
            await bus.join()
    assert sorted(runs) == [1, 1, 1, 2, 2, 2]
    assert bus.stats.succeeded == 2 and bus.stats.retried == 4


async def test_many_events_all_retrying_into_a_tiny_queue_finish_exactly_once() -> None:
    bus = EventBus(max_concurrency=2, max_queue=2)
    runs: dict[int, int] = {}

    @bus.listen(Charge, tries=3)
    async def flaky(event: Charge) -> None:
        runs[event.n] = runs.get(event.n, 0) + 1
        await anyio.sleep(0)
        if runs[event.n] < 3:
            raise RuntimeError("again")

    with anyio.fail_after(5):
        async with bus:
            for n in range(30):
                await bus.dispatch(Charge(n=n))
            await bus.join()
    assert runs == {n: 3 for n in range(30)}
    assert bus.stats.succeeded == 30 and bus.stats.retried == 60


async def test_timeout_fails_an_attempt_and_is_retried(driver: str) -> None:
    failures: list[BaseException] = []
    starts: list[float] = []

    async def on_failure(event: Event, listener: Listener, exc: BaseException) -> None:
        failures.append(exc)

    bus = EventBus(driver=driver, on_failure=on_failure)

    @bus.listen(Charge)
    class Hangs(EventListener):
        tries = 2
        timeout = 0.03

        async def handle(self, event: Charge) -> None:
            starts.append(anyio.current_time())
            await anyio.sleep_forever()

    with anyio.fail_after(5):
        async with bus:
            await bus.dispatch(Charge())
            await bus.join()
            end = anyio.current_time()
    assert len(starts) == 2
    assert starts[1] - starts[0] >= 0.03 - CLOCK_SLACK
    assert end - starts[1] >= 0.03 - CLOCK_SLACK
    assert len(failures) == 1 and isinstance(failures[0], TimeoutError)
    assert bus.stats.failed == 1 and bus.stats.retried == 1


async def test_failing_hanging_and_timing_out_listeners_never_stop_the_pool(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.CRITICAL, logger="eventbus")
    ok: list[int] = []
    failures: list[str] = []
    all_done = anyio.Event()

    def check_done() -> None:
        if len(ok) == 20 and len(failures) == 80:
            all_done.set()

    async def on_failure(event: Event, listener: Listener, exc: BaseException) -> None:
        # async: a plain def hook runs in a worker thread, where setting all_done is unsafe
        failures.append(listener.name.rsplit(".", 1)[-1])
        check_done()

    bus = EventBus(max_concurrency=3, drain_timeout=0.05, on_failure=on_failure)
    hang_started = anyio.Event()

    @bus.listen(Charge)
    async def raises(event: Charge) -> None:
        raise RuntimeError("broken")

    @bus.listen(Charge, timeout=0.01)
    async def times_out(event: Charge) -> None:
        await anyio.sleep_forever()

    @bus.listen(Charge)
    def raises_in_thread(event: Charge) -> None:
        raise OSError("disk")

    @bus.listen(Charge)
    class FailedRaisesToo(EventListener):
        async def handle(self, event: Charge) -> None:
            raise RuntimeError("handle")

        async def failed(self, event: Charge, exc: BaseException) -> None:
            raise RuntimeError("and failed() too")

    @bus.listen(Charge)
    async def works(event: Charge) -> None:
        await anyio.sleep(0)
        ok.append(event.n)
        check_done()

    @bus.listen(Other)
    async def hangs_forever(event: Other) -> None:  # no timeout: holds one worker
        hang_started.set()
        await anyio.sleep_forever()

    with anyio.fail_after(10):
        async with bus:
            await bus.dispatch(Other())
            await hang_started.wait()
            for n in range(20):
                await bus.dispatch(Charge(n=n))
            await all_done.wait()  # with one of three workers hanging all along
    assert sorted(ok) == list(range(20))
    stats = bus.stats
    assert (stats.succeeded, stats.failed, stats.dropped) == (20, 80, 1)
    assert Counter(failures) == {
        "raises": 20,
        "times_out": 20,
        "raises_in_thread": 20,
        "FailedRaisesToo": 20,
    }


async def test_on_failure_raising_is_logged_and_the_pool_goes_on(
    driver: str, caplog: pytest.LogCaptureFixture
) -> None:
    def on_failure(event: Event, listener: Listener, exc: BaseException) -> None:
        raise RuntimeError("sentry is down")

    bus = EventBus(driver=driver, on_failure=on_failure)
    ok: list[int] = []

    @bus.listen(Charge)
    async def broken(event: Charge) -> None:
        raise ValueError("x")

    @bus.listen(Charge)
    async def fine(event: Charge) -> None:
        ok.append(event.n)

    async with bus:
        for n in range(5):
            await bus.dispatch(Charge(n=n))
        await bus.join()
    assert sorted(ok) == list(range(5))
    assert bus.stats.failed == 5
    assert sum("on_failure raised" in r.getMessage() for r in caplog.records) == 5


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({"tries": 0}, "tries must be an int >= 1"),
        ({"backoff": -1}, "backoff delays must be >= 0"),
        ({"backoff": []}, "backoff must be seconds or a non-empty sequence"),
        ({"timeout": 0}, "timeout must be > 0 seconds"),
    ],
)
def test_bad_policies_are_rejected_at_registration(policy: dict[str, Any], message: str) -> None:
    bus = EventBus()

    async def listener(event: Charge) -> None:
        pass

    with pytest.raises(TypeError, match=message):
        bus.listen(Charge, **policy)(listener)
