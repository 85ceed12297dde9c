"""Every async test runs on asyncio and trio (anyio's pytest plugin)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import eventbus


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(autouse=True)
def _fresh_default_bus() -> Iterator[None]:
    """No test sees another test's registrations on the default bus."""
    previous = eventbus.set_bus(None)
    yield
    eventbus.set_bus(previous)
