"""Requirements 3 and 4: the async farm's bounds, backpressure, context and exact delivery."""

from __future__ import annotations

import threading
import time
from collections import Counter
from contextvars import ContextVar

import anyio
import pytest
from fixtures_core.gate import gated_listener

from eventbus import Event, EventBus, EventListener, QueueFull, context, define_key

pytestmark = pytest.mark.anyio

UserId = define_key[str]("farm_test_user")
locale: ContextVar[str] = ContextVar("farm_test_locale", default="unset")


class Ping(Event):
    n: int = 0


class Work(Event):
    producer: int
    seq: int


class Seen(Event):
    user: str


async def test_dispatch_returns_before_the_listener_runs() -> None:
    bus = EventBus()
    gate = anyio.Event()
    done = anyio.Event()

    @bus.listen(Ping)
    async def slow(event: Ping) -> None:
        await gate.wait()
        done.set()

    with anyio.fail_after(5):
        async with bus:
            await bus.dispatch(Ping())  # would hang here if it waited for `slow`
            assert not done.is_set()
            gate.set()
            await done.wait()


async def test_dispatch_with_room_does_not_yield_to_the_loop() -> None:
    # Design decision: no checkpoint on the fast path; workers only run once the caller yields.
    bus = EventBus(max_concurrency=2)
    ran: list[int] = []

    @bus.listen(Ping)
    async def record(event: Ping) -> None:
        ran.append(event.n)

    with anyio.fail_after(5):
        async with bus:
            await anyio.wait_all_tasks_blocked()
            for n in range(50):
                await bus.dispatch(Ping(n=n))
            assert ran == []
            assert bus.stats.queued == 50
            await bus.join()
    assert sorted(ran) == list(range(50))


async def test_running_listeners_never_exceed_max_concurrency() -> None:
    bus = EventBus(max_concurrency=4)
    current = peak = 0
    saturated = anyio.Event()
    gate = anyio.Event()

    @bus.listen(Ping)
    async def gauge(event: Ping) -> None:
        nonlocal current, peak
        current += 1
        peak = max(peak, current)
        assert bus.stats.running <= 4
        if current == 4:
            saturated.set()
        await gate.wait()
        await anyio.sleep(0)
        current -= 1

    with anyio.fail_after(5):
        async with bus:
            for n in range(40):
                await bus.dispatch(Ping(n=n))
            await saturated.wait()
            await anyio.wait_all_tasks_blocked()
            assert current == 4  # the bound is reached, and no fifth starts
            assert bus.stats.running == 4
            assert bus.stats.queued == 36
            gate.set()
            await bus.join()
    assert peak == 4
    assert bus.stats.succeeded == 40


async def test_concurrency_bound_holds_with_retries_and_many_listeners() -> None:
    bus = EventBus(max_concurrency=3, max_queue=5)
    current = peak = 0
    calls: Counter[str] = Counter()
    failed_once: set[int] = set()

    async def enter(name: str) -> None:
        nonlocal current, peak
        current += 1
        peak = max(peak, current)
        calls[name] += 1
        for _ in range(3):
            await anyio.sleep(0)
        current -= 1

    @bus.listen(Ping)
    async def a(event: Ping) -> None:
        await enter("a")

    @bus.listen(Ping, tries=2)
    async def b(event: Ping) -> None:
        await enter("b")
        if event.n not in failed_once:  # the first attempt of each event fails
            failed_once.add(event.n)
            raise RuntimeError("first attempt fails")

    @bus.listen(Ping)
    def c(event: Ping) -> None:  # a sync listener runs in a thread: still one slot
        calls["c"] += 1

    with anyio.fail_after(10):
        async with bus:
            for n in range(100):
                await bus.dispatch(Ping(n=n))
    assert peak <= 3
    assert calls == {"a": 100, "b": 200, "c": 100}
    assert bus.stats.succeeded == 300
    assert bus.stats.retried == 100


async def test_backpressure_blocks_dispatch_until_there_is_room() -> None:
    bus = EventBus(max_concurrency=1, max_queue=2)
    gate, started, ran = gated_listener(bus, Ping)
    returned = anyio.Event()

    async def producer() -> None:
        await bus.dispatch(Ping(n=4))
        returned.set()

    with anyio.fail_after(5):
        async with bus, anyio.create_task_group() as tg:
            await bus.dispatch(Ping(n=1))
            await started.wait()  # the only worker is busy
            await bus.dispatch(Ping(n=2))
            await bus.dispatch(Ping(n=3))  # the queue is full now
            tg.start_soon(producer)
            await anyio.wait_all_tasks_blocked()
            assert not returned.is_set()  # blocked
            assert bus.stats.queued == 2  # memory stays bounded
            gate.set()
            await returned.wait()  # unblocked once a worker took a job
            await bus.join()
    assert ran == [1, 2, 3, 4]
    assert bus.stats.dispatched == 4


async def test_on_full_raise_raises_queue_full_and_does_not_count_the_event() -> None:
    bus = EventBus(max_concurrency=1, max_queue=2, on_full="raise")
    gate, started, ran = gated_listener(bus, Ping)

    with anyio.fail_after(5):
        async with bus:
            await bus.dispatch(Ping(n=1))
            await started.wait()
            await bus.dispatch(Ping(n=2))
            await bus.dispatch(Ping(n=3))
            with pytest.raises(QueueFull, match="max_queue") as info:
                await bus.dispatch(Ping(n=4))
            assert "ping" in str(info.value)
            assert bus.stats.dispatched == 3
            gate.set()
            await bus.join()
            await bus.dispatch(Ping(n=5))  # room again
    assert ran == [1, 2, 3, 5]


async def test_an_event_with_more_listeners_than_max_queue_still_gets_in() -> None:
    bus = EventBus(max_concurrency=1, max_queue=2)
    ran: list[str] = []
    for name in "abcde":

        async def listener(event: Ping, name: str = name) -> None:
            ran.append(name)

        listener.__qualname__ = f"listener_{name}"
        bus.listen(Ping)(listener)

    with anyio.fail_after(5):
        async with bus:
            await bus.dispatch(Ping())
    assert ran == list("abcde")


async def test_a_producer_cancelled_while_waiting_for_room_does_not_take_a_wake_up() -> None:
    bus = EventBus(max_concurrency=1, max_queue=1)
    gate, started, ran = gated_listener(bus, Ping)

    scope = anyio.CancelScope()

    async def gives_up() -> None:
        with scope:
            await bus.dispatch(Ping(n=99))

    with anyio.fail_after(5):
        async with bus, anyio.create_task_group() as tg:
            await bus.dispatch(Ping(n=1))
            await started.wait()
            await bus.dispatch(Ping(n=2))  # the queue is full
            tg.start_soon(gives_up)  # first in line for room
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(bus.dispatch, Ping(n=3))  # second in line
            await anyio.wait_all_tasks_blocked()
            scope.cancel()
            await anyio.wait_all_tasks_blocked()
            gate.set()  # the room freed by n=2 must reach n=3
            await anyio.wait_all_tasks_blocked()
            await bus.join()
    assert ran == [1, 2, 3]
    assert bus.stats.dispatched == 3


async def test_many_producers_into_a_small_queue_run_every_job_exactly_once() -> None:
    producers, per_producer = 50, 200
    bus = EventBus(max_concurrency=10, max_queue=8)
    runs: Counter[tuple[int, int]] = Counter()
    second: Counter[tuple[int, int]] = Counter()
    peak_queued = 0

    @bus.listen(Work)
    async def first(event: Work) -> None:
        nonlocal peak_queued
        peak_queued = max(peak_queued, bus.stats.queued)
        if event.seq % 3 == 0:
            await anyio.sleep(0)
        runs[event.producer, event.seq] += 1

    @bus.listen(Work)
    class Second(EventListener):
        async def handle(self, event: Work) -> None:
            second[event.producer, event.seq] += 1

    async def produce(producer: int) -> None:
        for seq in range(per_producer):
            await bus.dispatch(Work(producer=producer, seq=seq))

    with anyio.fail_after(30):
        async with bus:
            async with anyio.create_task_group() as tg:
                for producer in range(producers):
                    tg.start_soon(produce, producer)
            await bus.join()
            assert bus.stats.queued == bus.stats.running == 0

    expected = {(p, s) for p in range(producers) for s in range(per_producer)}
    assert runs == dict.fromkeys(expected, 1)
    assert second == dict.fromkeys(expected, 1)
    assert peak_queued <= 8
    stats = bus.stats
    assert stats.dispatched == 10_000
    assert stats.succeeded == 20_000
    assert (stats.failed, stats.dropped, stats.retried) == (0, 0, 0)


async def test_each_job_sees_the_user_that_dispatched_it() -> None:
    bus = EventBus(max_concurrency=20, max_queue=64)
    mismatches: list[tuple[str, str | None]] = []
    seen: Counter[str] = Counter()

    @bus.listen(Seen)
    async def check(event: Seen) -> None:
        await anyio.sleep(0)
        user = context.get(UserId)
        if user != event.user or locale.get() != f"loc-{event.user}":
            mismatches.append((event.user, user))
        seen[event.user] += 1
        context.set(UserId, "changed-by-listener")  # stays this job's own

    @bus.listen(Seen)
    def check_in_thread(event: Seen) -> None:
        assert threading.current_thread() is not threading.main_thread()
        if context.get(UserId) != event.user:
            mismatches.append((event.user, context.get(UserId)))
        seen["thread"] += 1

    async def request(n: int) -> None:
        user = f"user-{n}"
        context.set(UserId, user)
        locale.set(f"loc-{user}")
        await anyio.sleep(0)
        await bus.dispatch(Seen(user=user))
        context.set(UserId, "changed-after-dispatch")  # must not leak into the job
        assert context.get(UserId) == "changed-after-dispatch"

    with anyio.fail_after(30):
        async with bus:
            async with anyio.create_task_group() as tg:
                for n in range(1000):
                    tg.start_soon(request, n)
            await bus.join()
    assert mismatches == []
    assert seen.pop("thread") == 1000
    assert seen == {f"user-{n}": 1 for n in range(1000)}
    assert context.get(UserId) is None


async def test_listeners_of_one_event_get_separate_copies_of_the_context() -> None:
    bus = EventBus(max_concurrency=1)
    seen: list[str] = []

    @bus.listen(Ping)
    async def first(event: Ping) -> None:
        seen.append(locale.get())
        locale.set("first was here")

    @bus.listen(Ping)
    async def second(event: Ping) -> None:
        seen.append(locale.get())

    async with bus:
        token = locale.set("request")
        try:
            await bus.dispatch(Ping())
        finally:
            locale.reset(token)
    assert seen == ["request", "request"]


async def test_a_flood_of_instant_listeners_does_not_starve_other_tasks() -> None:
    bus = EventBus(max_concurrency=1, max_queue=5000)
    ran = 0
    progress: list[int] = []

    @bus.listen(Ping)
    async def instant(event: Ping) -> None:  # never suspends; 20 us of CPU each
        nonlocal ran
        start = time.perf_counter()
        while time.perf_counter() - start < 20e-6:
            pass
        ran += 1

    async def watcher() -> None:
        while ran < 3000:
            progress.append(ran)
            await anyio.lowlevel.checkpoint()

    with anyio.fail_after(10):
        async with bus:
            for n in range(3000):
                await bus.dispatch(Ping(n=n))
            async with anyio.create_task_group() as tg:
                tg.start_soon(watcher)
            assert ran == 3000
    # >= 60 ms of jobs; the farm yields every few ms (its time slice): the watcher ran between.
    assert len([p for p in progress if 0 < p < 3000]) >= 5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_concurrency": 0}, "max_concurrency must be an int >= 1"),
        ({"max_concurrency": 2.5}, "max_concurrency must be an int >= 1"),
        ({"max_queue": 0}, "max_queue must be an int >= 1"),
        ({"max_queue": True}, "max_queue must be an int >= 1"),
        ({"on_full": "drop"}, "on_full must be 'wait' or 'raise'"),
        ({"drain_timeout": -1}, "drain_timeout must be >= 0"),
    ],
)
def test_bad_farm_settings_are_rejected_at_creation(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        EventBus(driver="async_farm", **kwargs)  # type: ignore[arg-type]


def test_describe_shows_the_farm_settings() -> None:
    bus = EventBus(driver="async_farm", max_concurrency=7, max_queue=9, on_full="raise")
    assert bus.driver.describe() == {
        "driver": "async_farm",
        "max_concurrency": 7,
        "max_queue": 9,
        "on_full": "raise",
        "drain_timeout": 30.0,
    }
