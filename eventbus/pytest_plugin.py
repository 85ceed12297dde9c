"""pytest fixtures for apps using eventbus; loaded through the ``pytest11`` entry point.

Installing eventbus is enough: no conftest needed. ``event_bus`` gives each test a fresh
default bus, so registrations never leak from one test into the next; ``event_fake`` fakes the
default bus for the test. Both are sync fixtures, so they work with any async test runner.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import eventbus

from ._bus import EventBus
from .testing import EventFake

__all__ = ["event_bus", "event_fake"]


@pytest.fixture
def event_bus() -> Iterator[EventBus]:
    """A fresh default bus for this test; the previous default comes back afterwards.

    Everything the test (or code it imports) registers with ``eventbus.listen`` or
    ``load_provider`` lands on this bus and is gone after the test. Start its farm in the test
    with ``async with event_bus:`` when you ``dispatch``.
    """
    previous = eventbus.set_bus(None)
    try:
        yield eventbus.get_bus()
    finally:
        eventbus.set_bus(previous)


@pytest.fixture
def event_fake(request: pytest.FixtureRequest) -> Iterator[EventFake]:
    """The default bus, faked for this test: ``dispatch``/``dispatch_now`` only record.

    Its registrations stay in place (``assert_listening`` still works). When the test also
    asks for ``event_bus``, that fresh bus is the one faked, whatever the argument order.
    """
    if "event_bus" in request.fixturenames:
        bus: EventBus = request.getfixturevalue("event_bus")
    else:
        bus = eventbus.get_bus()
    with bus.fake() as fake:
        yield fake
