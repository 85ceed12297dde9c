"""Requirement 5: dispatch_now runs each listener once, in order, and reports failures."""

from __future__ import annotations

import logging
import threading
from contextvars import ContextVar

import anyio
import pytest

import eventbus
from eventbus import Event, EventBus, EventListener

pytestmark = pytest.mark.anyio

request_id: ContextVar[str] = ContextVar("request_id", default="unset")


class OrderPlaced(Event):
    order_id: int = 1


class OrderShipped(OrderPlaced):
    pass


class Nobody(Event):
    pass


async def test_each_listener_runs_exactly_once_in_table_order() -> None:
    log: list[str] = []
    bus = EventBus()

    @bus.listen(OrderPlaced)
    async def first(event: OrderPlaced) -> None:
        log.append("first")

    @bus.listen(OrderPlaced)
    class Second(EventListener):
        def handle(self, event: OrderPlaced) -> None:
            log.append("second")

    @bus.listen(OrderShipped)
    async def specific(event: OrderShipped) -> None:
        log.append("specific")

    @bus.listen(OrderPlaced)
    def third(event: OrderPlaced) -> None:
        log.append("third")

    with anyio.fail_after(5):
        await bus.dispatch_now(OrderShipped())
    assert log == ["specific", "first", "second", "third"]


async def test_listeners_run_one_after_another_and_all_finish_before_return() -> None:
    log: list[str] = []
    bus = EventBus()
    gate = anyio.Event()

    @bus.listen(OrderPlaced)
    async def slow(event: OrderPlaced) -> None:
        log.append("slow start")
        await anyio.lowlevel.checkpoint()
        gate.set()
        log.append("slow end")

    @bus.listen(OrderPlaced)
    async def after(event: OrderPlaced) -> None:
        assert gate.is_set()  # never overlaps the one before it
        log.append("after")

    await bus.dispatch_now(OrderPlaced())
    assert log == ["slow start", "slow end", "after"]


async def test_a_fresh_instance_handles_each_event() -> None:
    instances: list[object] = []

    class Counting(EventListener):
        async def handle(self, event: OrderPlaced) -> None:
            instances.append(self)

    bus = EventBus({OrderPlaced: [Counting]})
    await bus.dispatch_now(OrderPlaced())
    await bus.dispatch_now(OrderPlaced())
    assert len(instances) == 2
    assert instances[0] is not instances[1]


async def test_a_failure_does_not_stop_the_rest_and_all_are_grouped() -> None:
    log: list[str] = []
    bus = EventBus()

    @bus.listen(OrderPlaced)
    async def breaks(event: OrderPlaced) -> None:
        raise ValueError("bad order")

    @bus.listen(OrderPlaced)
    async def works(event: OrderPlaced) -> None:
        log.append("works")

    @bus.listen(OrderPlaced)
    class BreaksToo(EventListener):
        def handle(self, event: OrderPlaced) -> None:
            raise KeyError("missing")

    @bus.listen(OrderPlaced)
    async def last(event: OrderPlaced) -> None:
        log.append("last")

    with pytest.raises(ExceptionGroup) as caught:
        await bus.dispatch_now(OrderPlaced())
    assert log == ["works", "last"]
    group = caught.value
    assert "2 of 4 listener(s) failed" in str(group)
    assert "'order_placed'" in str(group)
    value_error, key_error = group.exceptions
    assert isinstance(value_error, ValueError)
    assert str(value_error) == "bad order"
    assert isinstance(key_error, KeyError)
    (value_note,) = value_error.__notes__
    (key_note,) = key_error.__notes__
    assert value_note.startswith("raised by listener ")
    assert value_note.endswith(".breaks handling 'order_placed'")
    assert key_note.endswith(".BreaksToo handling 'order_placed'")
    assert bus.stats.failed == 2
    assert bus.stats.succeeded == 2


async def test_one_failure_is_still_a_group() -> None:
    bus = EventBus()

    @bus.listen(OrderPlaced)
    async def breaks(event: OrderPlaced) -> None:
        raise RuntimeError("once")

    with pytest.raises(ExceptionGroup) as caught:
        await bus.dispatch_now(OrderPlaced())
    assert caught.group_contains(RuntimeError, match="once")
    assert len(caught.value.exceptions) == 1


async def test_no_listeners_runs_nothing_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus()
    with caplog.at_level(logging.DEBUG, logger="eventbus"):
        await bus.dispatch_now(Nobody())
    (record,) = [r for r in caplog.records if r.name == "eventbus"]
    assert record.levelno == logging.WARNING
    assert record.event_name == "nobody"  # type: ignore[attr-defined]
    assert record.listener is None  # type: ignore[attr-defined]
    assert "no listeners" in record.getMessage()


async def test_every_record_fits_a_formatter_using_the_structured_fields(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = EventBus(driver="sync")

    async def breaks(event: OrderPlaced) -> None:
        raise RuntimeError("boom")

    with caplog.at_level(logging.DEBUG, logger="eventbus"):
        bus.listen(OrderPlaced)(breaks)
        bus.listen(OrderPlaced)(breaks)  # the repeat is logged
        await bus.dispatch_now(Nobody())
        await bus.dispatch(Nobody())
        await bus.dispatch(OrderPlaced())
        with pytest.raises(KeyError, match="rolled back"):
            async with bus.defer():
                await bus.dispatch(OrderPlaced())
                raise KeyError("rolled back")
    records = [r for r in caplog.records if r.name == "eventbus"]
    assert len(records) == 4  # no listeners (once per type), repeat, failure, discarded defer
    formatter = logging.Formatter("%(event_name)s %(listener)s %(attempt)s %(message)s")
    for record in records:
        formatter.format(record)  # raises (KeyError/ValueError) if a field is missing


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (OrderPlaced, "did you pass the class instead of an instance?"),
        ({"order_id": 1}, "got dict"),
        ("order_placed", "got str"),
        (None, "got NoneType"),
    ],
)
async def test_dispatching_a_non_event_raises_type_error(value: object, shown: str) -> None:
    bus = EventBus({OrderPlaced: [lambda event: None]})
    with pytest.raises(TypeError, match="dispatch takes an Event instance") as caught:
        await bus.dispatch_now(value)  # type: ignore[arg-type]
    assert shown in str(caught.value)


async def test_introspecting_a_mixin_does_not_make_its_instances_dispatchable() -> None:
    class Mixin:
        pass

    bus = EventBus()
    bus.listen(Mixin)(lambda event: None)
    assert len(bus.listeners_for(Mixin)) == 1
    with pytest.raises(TypeError, match="Mixin object"):
        await bus.dispatch_now(Mixin())  # type: ignore[arg-type]


async def test_timeout_applies_in_dispatch_now() -> None:
    log: list[str] = []

    class Stuck(EventListener):
        timeout = 0.05

        async def handle(self, event: OrderPlaced) -> None:
            await anyio.sleep_forever()

    bus = EventBus({OrderPlaced: [Stuck]})

    @bus.listen(OrderPlaced, timeout=0.05)
    async def also_stuck(event: OrderPlaced) -> None:
        await anyio.Event().wait()

    @bus.listen(OrderPlaced)
    async def after(event: OrderPlaced) -> None:
        log.append("after")

    with anyio.fail_after(5), pytest.raises(ExceptionGroup) as caught:
        await bus.dispatch_now(OrderPlaced())
    assert [type(e) for e in caught.value.exceptions] == [TimeoutError, TimeoutError]
    assert log == ["after"]


async def test_tries_are_ignored_by_dispatch_now() -> None:
    calls: list[int] = []

    class Flaky(EventListener):
        tries = 3

        async def handle(self, event: OrderPlaced) -> None:
            calls.append(1)
            raise RuntimeError("flaky")

    with pytest.raises(ExceptionGroup):
        await EventBus({OrderPlaced: [Flaky]}).dispatch_now(OrderPlaced())
    assert calls == [1]


async def test_sync_handle_runs_in_a_worker_thread_and_sees_contextvars() -> None:
    seen: dict[str, object] = {}
    UserId = eventbus.define_key[str]("dispatch_now_user")

    class Blocking(EventListener):
        def handle(self, event: OrderPlaced) -> None:
            seen["thread"] = threading.get_ident()
            seen["request_id"] = request_id.get()
            seen["user"] = eventbus.context.get(UserId)

    def plain(event: OrderPlaced) -> None:
        seen["plain_thread"] = threading.get_ident()

    bus = EventBus({OrderPlaced: [Blocking, plain]})
    request_id.set("r-42")
    eventbus.context.set(UserId, "u1")
    with anyio.fail_after(5):
        await bus.dispatch_now(OrderPlaced())
    loop_thread = threading.get_ident()
    assert seen["thread"] != loop_thread
    assert seen["plain_thread"] != loop_thread
    assert seen["request_id"] == "r-42"
    assert seen["user"] == "u1"


async def test_failed_listeners_are_logged_with_event_name_and_listener(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = EventBus()

    @bus.listen(OrderPlaced)
    async def explodes(event: OrderPlaced) -> None:
        raise ValueError("boom")

    with caplog.at_level(logging.DEBUG, logger="eventbus"), pytest.raises(ExceptionGroup):
        await bus.dispatch_now(OrderPlaced())
    (record,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.name == "eventbus"
    assert record.event_name == "order_placed"  # type: ignore[attr-defined]
    assert record.listener.endswith("explodes")  # type: ignore[attr-defined]
    assert record.attempt == 1  # type: ignore[attr-defined]
    assert record.exc_info is not None and isinstance(record.exc_info[1], ValueError)


async def test_failed_hook_and_on_failure_run_for_dispatch_now() -> None:
    reported: list[str] = []

    class Broken(EventListener):
        async def handle(self, event: OrderPlaced) -> None:
            raise ValueError("nope")

        async def failed(self, event: OrderPlaced, exc: BaseException) -> None:
            reported.append(f"failed:{exc}")

    def on_failure(event: Event, listener: eventbus.Listener, exc: BaseException) -> None:
        reported.append(f"on_failure:{listener.name.rsplit('.', 1)[-1]}")

    bus = EventBus({OrderPlaced: [Broken]}, on_failure=on_failure)
    with pytest.raises(ExceptionGroup):
        await bus.dispatch_now(OrderPlaced())
    assert reported == ["failed:nope", "on_failure:Broken"]
