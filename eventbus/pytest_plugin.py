"""pytest fixtures for apps using eventbus; loaded through the ``pytest11`` entry point.

Installing eventbus is enough: no conftest needed. ``event_bus`` isolates the default bus for
one test — the same object an app module holds (``bus = eventbus.get_bus()``), so the app's
lifespan and the test see one bus — and undoes what the test did to it afterwards;
``event_fake`` is that isolated bus, faked. Both are sync fixtures, so they work with any
async test runner.

A test runs on a fresh in-process farm whatever ``QUEUE_DRIVER`` says: a deployment setting
exported in the shell must not make tests publish real jobs. A test that wants another
driver asks for it: ``@pytest.mark.eventbus(driver="rabbitmq")``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import eventbus

from . import drivers
from ._api import peek_bus
from ._bus import EventBus, isolated
from .drivers.base import Driver
from .testing import EventFake

__all__ = ["event_bus", "event_fake"]

_MARKER = "eventbus"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{_MARKER}(driver=...): the driver the event_bus/event_fake fixtures give this test "
        "(a QUEUE_DRIVER name or a Driver instance; default: a fresh in-process farm, "
        "whatever QUEUE_DRIVER says)",
    )


def _driver_for(request: pytest.FixtureRequest) -> Driver | str:
    marker = request.node.get_closest_marker(_MARKER)
    if marker is None:
        return "async_farm"
    unknown = set(marker.kwargs) - {"driver"}
    if marker.args or unknown:
        raise pytest.UsageError(
            f"@pytest.mark.{_MARKER} takes only driver=..., got "
            f"args={marker.args!r} kwargs={sorted(unknown)!r}; write "
            f'@pytest.mark.{_MARKER}(driver="rabbitmq")'
        )
    driver: Driver | str = marker.kwargs.get("driver", "async_farm")
    return driver


def _fresh_driver(spec: Driver | str) -> Driver:
    # No options given: the driver's own defaults, the same as EventBus(driver=spec).
    return drivers.create(spec)


@pytest.fixture
def event_bus(request: pytest.FixtureRequest) -> Iterator[EventBus]:
    """The default bus, isolated for this test; what the test did to it is undone afterwards.

    It is the same object as ``eventbus.get_bus()`` (and as an app's module-level
    ``bus = eventbus.get_bus()``), keeps what was registered before the test (the app's
    provider), and runs on a fresh in-process farm unless the test is marked
    ``@pytest.mark.eventbus(driver=...)``. Registrations, stats and fakes made during the test
    are gone after it. Start its farm in the test with ``async with event_bus:`` or through
    the app's lifespan.
    """
    driver = _driver_for(request)
    if peek_bus() is None:
        # Created here, not by get_bus(): that would read QUEUE_DRIVER. It stays the default
        # after the test, since code imported during the test may hold it.
        eventbus.set_bus(EventBus(name="default", driver="async_farm"))
    with isolated(eventbus.get_bus(), _fresh_driver(driver)) as bus:
        yield bus


@pytest.fixture
def event_fake(event_bus: EventBus) -> Iterator[EventFake]:
    """The ``event_bus`` bus, faked for this test: ``dispatch``/``dispatch_now`` only record.

    Its registrations stay in place (``assert_listening`` still works).
    """
    with event_bus.fake() as fake:
        yield fake
