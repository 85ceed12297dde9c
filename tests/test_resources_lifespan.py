"""Issue 10 #15: a provider's ``lifespan`` opens the app's resources around every job.

In process on the farm (asyncio and trio), through ``bus.lifespan`` (FastAPI) and in a real
``eventbus work`` process on RabbitMQ: opened before the first job runs, closed after the
last one finished.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fixtures_core import write

import eventbus
from eventbus import EventBus, RegistrationError

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rabbitmq_app.harness import URL_, results, wait_until, worker_pool

# The provider records what happens, in order, in its module-level ``LOG``; ``POOL`` stands in
# for a database pool that a listener must find open.
PROVIDER = """
from contextlib import asynccontextmanager

import anyio

from eventbus import Event, EventListener

LOG = []
POOL = {"open": False}


class Signup(Event):
    n: int


class SendWelcome(EventListener):
    async def handle(self, event: Signup) -> None:
        assert POOL["open"], "the pool must be open while a job runs"
        LOG.append(f"start {event.n}")
        await anyio.sleep(0.01)  # still running when the block exits: the drain waits
        LOG.append(f"done {event.n}")


events = {Signup: [SendWelcome]}


@asynccontextmanager
async def lifespan():
    POOL["open"] = True
    LOG.append("open")
    try:
        yield
    finally:
        await anyio.sleep(0)  # closing a pool awaits too
        POOL["open"] = False
        LOG.append("close")
"""


@pytest.fixture
def provider(project: Path) -> Any:
    write(project, "app/__init__.py", "")
    write(project, "app/event_provider.py", PROVIDER)
    bus = eventbus.load_provider("app.event_provider", EventBus(max_concurrency=4))
    module = sys.modules["app.event_provider"]
    return bus, module


def assert_open_first_close_last(log: list[str], jobs: int) -> None:
    assert log[0] == "open" and log[-1] == "close", log
    assert sorted(log[1:-1]) == sorted(
        [f"start {n}" for n in range(jobs)] + [f"done {n}" for n in range(jobs)]
    )


@pytest.mark.anyio
async def test_async_with_bus_opens_before_the_first_job_and_closes_after_the_last(
    provider: Any,
) -> None:
    bus, module = provider
    async with bus:
        assert module.LOG == ["open"]
        for n in range(10):
            await bus.dispatch(module.Signup(n=n))
    assert_open_first_close_last(module.LOG, 10)
    assert bus.stats.succeeded == 10 and bus.stats.failed == 0


@pytest.mark.anyio
async def test_the_fastapi_lifespan_opens_and_closes_them_too(provider: Any) -> None:
    bus, module = provider
    async with bus.lifespan(object()):  # what FastAPI(lifespan=bus.lifespan) enters
        for n in range(5):
            await bus.dispatch(module.Signup(n=n))
    assert_open_first_close_last(module.LOG, 5)


@pytest.mark.anyio
async def test_loading_the_provider_twice_opens_them_once(provider: Any) -> None:
    bus, module = provider
    eventbus.load_provider("app.event_provider", bus)
    async with bus:
        await bus.dispatch(module.Signup(n=0))
    assert module.LOG.count("open") == 1 and module.LOG.count("close") == 1


@pytest.mark.anyio
async def test_a_resource_that_fails_to_open_stops_the_start(project: Path) -> None:
    opened: list[str] = []
    bus = EventBus()

    @bus.add_lifespan
    def first() -> Any:
        return _recording(opened, "first")

    @bus.add_lifespan
    def broken() -> Any:
        raise ConnectionError("redis is down")

    with pytest.raises(ConnectionError, match="redis is down"):
        async with bus:
            pytest.fail("the bus must not start without its resources")
    assert opened == ["open first", "close first"]  # what opened is closed again


class _recording:
    def __init__(self, log: list[str], name: str) -> None:
        self.log, self.name = log, name

    async def __aenter__(self) -> None:
        self.log.append(f"open {self.name}")

    async def __aexit__(self, *exc: object) -> None:
        self.log.append(f"close {self.name}")


@pytest.mark.anyio
async def test_a_lifespan_returning_no_context_manager_names_itself() -> None:
    bus = EventBus()

    def pools() -> Any:
        return None

    bus.add_lifespan(pools)
    with pytest.raises(TypeError, match=r"lifespan .*pools\(\) returned None, not an async"):
        async with bus:
            pytest.fail("the bus must not start")


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "async def lifespan():\n    yield\n",
            "is an async generator function; decorate it with @contextlib.asynccontextmanager",
        ),
        (
            "from contextlib import asynccontextmanager\n"
            "@asynccontextmanager\nasync def lifespan(app):\n    yield\n",
            "must take no arguments",
        ),
        ("lifespan = 3\n", "is not callable"),
    ],
)
def test_a_bad_provider_lifespan_is_refused_at_load_time(
    project: Path, source: str, message: str
) -> None:
    write(project, "app/__init__.py", "")
    write(project, "app/event_provider.py", "events = {}\n" + source)
    bus = EventBus()
    with pytest.raises(RegistrationError, match=message):
        eventbus.load_provider("app.event_provider", bus)
    assert bus._lifespans == []


# -- in a real `eventbus work` process, on RabbitMQ ---------------------------------------------


@pytest.fixture
def workers(queue: str, tmp_path: Path) -> Iterator[Any]:
    yield from worker_pool(queue, tmp_path, provider="rabbitmq_app.lifespan_provider")


@pytest.mark.rabbitmq
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_eventbus_work_opens_them_before_the_first_job_and_closes_after_the_last(
    queue: str, workers: Any
) -> None:
    from rabbitmq_app.events import Slow
    from rabbitmq_app.lifespan_provider import events as lifespan_events

    from eventbus.drivers.rabbitmq import RabbitMQDriver

    [worker] = await workers(1, "--concurrency", "4")
    publisher = EventBus(lifespan_events, driver=RabbitMQDriver(URL_, queue=queue))
    async with publisher:
        for n in range(8):
            await publisher.dispatch(Slow(n=n, seconds=0.05))

    def lines() -> list[Any]:
        return sorted(results(workers.results), key=lambda r: r.at)

    # SIGTERM once the last job *started*: it is still running, and must finish before close.
    await wait_until(lambda: sum(r.kind == "start" for r in lines()) == 8, 60, "all 8 jobs started")
    worker.signal(signal.SIGTERM)
    assert await worker.wait(60) == 0, worker.output()
    log = lines()
    kinds = [r.kind for r in log]
    assert kinds[0] == "open" and kinds[-1] == "close", kinds
    assert kinds.count("open") == 1 and kinds.count("close") == 1
    assert sorted(r.n for r in log if r.kind == "done") == list(range(8))
    assert all(r.extra == "pool-open" for r in log if r.kind in ("start", "done"))
