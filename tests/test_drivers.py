"""Requirement 2: choosing a driver, the sync driver, and the Driver seam."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import Context, ContextVar

import anyio
import pytest

from eventbus import Driver, Event, EventBus, FarmNotRunning, Listener

pytestmark = pytest.mark.anyio

tenant: ContextVar[str] = ContextVar("drivers_test_tenant", default="none")


class Signup(Event):
    email: str = "a@example.com"


@pytest.fixture
def no_queue_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QUEUE_DRIVER", raising=False)


# -- choosing a driver --------------------------------------------------------------------


@pytest.mark.usefixtures("no_queue_driver")
def test_the_default_driver_is_the_async_farm() -> None:
    assert EventBus().driver.name == "async_farm"


def test_queue_driver_env_var_selects_the_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUEUE_DRIVER", "sync")
    assert EventBus().driver.name == "sync"
    monkeypatch.setenv("QUEUE_DRIVER", "async_farm")
    assert EventBus().driver.name == "async_farm"


def test_an_explicit_driver_wins_over_the_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUEUE_DRIVER", "sync")
    assert EventBus(driver="async_farm").driver.name == "async_farm"


@pytest.mark.usefixtures("no_queue_driver")
def test_an_unknown_driver_name_fails_at_creation_listing_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="unknown queue driver") as info:
        EventBus(driver="celery")
    message = str(info.value)
    assert "driver='celery'" in message
    for name in ("'async_farm'", "'sync'", "'rabbitmq'"):
        assert name in message


def test_an_unknown_queue_driver_env_var_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("QUEUE_DRIVER", "redis")
    with pytest.raises(ValueError, match=r"QUEUE_DRIVER='redis'.*'async_farm', 'sync'"):
        EventBus()


# -- the async farm without a running farm --------------------------------------------------


async def test_dispatch_without_a_running_farm_says_how_to_start_one() -> None:
    bus = EventBus(driver="async_farm")
    ran: list[str] = []

    @bus.listen(Signup)
    async def welcome(event: Signup) -> None:
        ran.append(event.email)

    with pytest.raises(FarmNotRunning) as info:
        await bus.dispatch(Signup())
    message = str(info.value)
    assert "'signup'" in message
    assert "async with bus" in message
    assert "lifespan" in message
    assert "QUEUE_DRIVER=sync" in message
    assert isinstance(info.value, RuntimeError)
    assert ran == []
    assert bus.stats.dispatched == 0


async def test_dispatch_of_an_event_nobody_hears_needs_no_farm() -> None:
    bus = EventBus(driver="async_farm")
    await bus.dispatch(Signup())  # nothing to queue: nothing to refuse
    assert bus.stats.dispatched == 1


async def test_dispatch_now_needs_no_farm() -> None:
    bus = EventBus(driver="async_farm")
    ran: list[str] = []

    @bus.listen(Signup)
    async def welcome(event: Signup) -> None:
        ran.append(event.email)

    await bus.dispatch_now(Signup())
    assert ran == ["a@example.com"]


# -- the sync driver ------------------------------------------------------------------------


async def test_sync_dispatch_runs_listeners_inline_in_order_without_a_farm() -> None:
    bus = EventBus(driver="sync")
    log: list[str] = []

    @bus.listen(Signup)
    async def first(event: Signup) -> None:
        await anyio.sleep(0)
        log.append("first")

    @bus.listen(Signup)
    def second(event: Signup) -> None:
        log.append("second")

    await bus.dispatch(Signup())
    assert log == ["first", "second"]  # done when dispatch returns
    stats = bus.stats
    assert (stats.dispatched, stats.succeeded, stats.queued, stats.running) == (1, 2, 0, 0)


async def test_sync_dispatch_never_raises_a_listeners_failure() -> None:
    failures: list[BaseException] = []
    bus = EventBus(driver="sync", on_failure=lambda e, listener, exc: failures.append(exc))
    log: list[str] = []

    @bus.listen(Signup)
    async def broken(event: Signup) -> None:
        raise RuntimeError("smtp down")

    @bus.listen(Signup)
    async def after(event: Signup) -> None:
        log.append("after")

    await bus.dispatch(Signup())
    assert log == ["after"]
    assert [str(f) for f in failures] == ["smtp down"]
    assert bus.stats.failed == 1 and bus.stats.succeeded == 1


async def test_sync_listeners_see_the_callers_context_in_separate_copies() -> None:
    bus = EventBus(driver="sync")
    seen: list[str] = []

    @bus.listen(Signup)
    async def first(event: Signup) -> None:
        seen.append(tenant.get())
        tenant.set("changed by first")

    @bus.listen(Signup)
    async def second(event: Signup) -> None:
        seen.append(tenant.get())

    token = tenant.set("acme")
    try:
        await bus.dispatch(Signup())
        assert tenant.get() == "acme"
    finally:
        tenant.reset(token)
    assert seen == ["acme", "acme"]


async def test_sync_driver_works_inside_async_with_bus_and_join_returns() -> None:
    bus = EventBus(driver="sync")
    log: list[str] = []

    @bus.listen(Signup)
    async def record(event: Signup) -> None:
        log.append(event.email)

    async with bus:
        await bus.dispatch(Signup())
        await bus.join()
    assert log == ["a@example.com"]


# -- the seam -----------------------------------------------------------------------------


class RecordingDriver(Driver):
    """A minimal custom driver: runs nothing, records what it was handed."""

    name = "recording"

    def __init__(self) -> None:
        self.submitted: list[tuple[Event, tuple[Listener, ...], Context]] = []
        self.started = self.stopped = False

    async def submit(self, event: Event, listeners: tuple[Listener, ...], context: Context) -> None:
        self.submitted.append((event, listeners, context))

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        self.started = True
        try:
            yield
        finally:
            self.stopped = True


async def test_a_custom_driver_gets_the_event_its_listeners_and_the_callers_context() -> None:
    driver = RecordingDriver()
    bus = EventBus(driver=driver)
    assert bus.driver is driver and driver.bus is bus

    @bus.listen(Signup)
    async def welcome(event: Signup) -> None:
        pass

    async with bus:
        assert driver.started
        token = tenant.set("acme")
        try:
            await bus.dispatch(Signup(email="b@example.com"))
        finally:
            tenant.reset(token)
    assert driver.stopped
    ((event, listeners, ctx),) = driver.submitted
    assert event == Signup(email="b@example.com")
    assert [listener.target for listener in listeners] == [welcome]
    assert ctx.run(tenant.get) == "acme"
    assert driver.describe() == {"driver": "recording"}


def test_a_driver_instance_serves_one_bus() -> None:
    driver = RecordingDriver()
    EventBus(driver=driver)
    with pytest.raises(ValueError, match=r"already used by another EventBus.*its own instance"):
        EventBus(driver=driver)


def test_rabbitmq_driver_without_aio_pika_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    monkeypatch.delitem(sys.modules, "eventbus.drivers.rabbitmq", raising=False)
    monkeypatch.setitem(sys.modules, "aio_pika", None)  # import of aio_pika now fails
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'eventbus\[rabbitmq\]'"):
        EventBus(driver="rabbitmq")
