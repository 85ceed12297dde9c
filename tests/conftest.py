"""Every async test runs on asyncio and trio (anyio's pytest plugin); shared fixtures."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fixtures_core import forget

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


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty project root: the current directory, first on sys.path, no ``app.*`` loaded.

    For what runs "from the project root" (make, list, discover, boot). The cwd, sys.path,
    ``EVENTBUS_PROVIDER`` and the imported ``app`` modules are restored afterwards.
    """
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    monkeypatch.delenv("EVENTBUS_PROVIDER", raising=False)
    forget("app")
    yield tmp_path
    forget("app")


# -- RabbitMQ: a fresh queue per test, and `eventbus work` processes on it ------------------
# The harness is imported only when a test asks: tests without a broker never load aio-pika.


@pytest.fixture
def queue() -> Iterator[str]:
    """A fresh queue name on the test broker; its queues are deleted afterwards."""
    from rabbitmq_app.harness import fresh_queue

    yield from fresh_queue()


@pytest.fixture
def workers(queue: str, tmp_path: Path) -> Iterator[Any]:
    """``await workers(n, *args)`` starts ``n`` worker processes on ``queue``."""
    from rabbitmq_app.harness import worker_pool

    yield from worker_pool(queue, tmp_path)
