"""Issue 11 #2: ``drivers/base.py`` is the whole seam; a driver written against it alone works.

Its retries and final failures go through ``bus.attempt_failed`` (the one retry-or-fail
decision), and ``current_job()`` is what it sets with ``set_current_job``.
"""

from __future__ import annotations

import ast
import inspect
import uuid
from contextvars import Context

import anyio
import pytest

import eventbus
from eventbus.drivers import base
from eventbus.drivers.base import (
    Driver,
    Event,
    Job,
    Listener,
    current_job,
    run_attempt,
    set_current_job,
)

pytestmark = pytest.mark.anyio


def test_base_imports_no_eventbus_and_names_no_private_module_a_driver_needs() -> None:
    tree = ast.parse(inspect.getsource(base))
    imported: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            imported += [alias.name for alias in node.names]
            assert node.module not in ("_bus", "eventbus._bus"), ast.unparse(node)
        elif isinstance(node, ast.Import):
            imported += [alias.name for alias in node.names]
    assert imported, "the check found no import at all"
    assert "EventBus" not in imported
    names: set[object] = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    names |= {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)}
    assert "EventBus" not in names  # not even in an annotation
    for name in ("run_attempt", "start_attempt", "set_current_job", "Job", "Bus", "Driver"):
        assert name in base.__all__, name
    # What a driver calls on the bus is stated by the Bus protocol, publicly.
    for member in ("attempt_failed", "job_dropped", "lookup", "listeners", "registered_types"):
        assert hasattr(base.Bus, member), member
        assert hasattr(eventbus.EventBus, member), member


class InlineRetrying(Driver):
    """A complete driver using nothing but drivers/base.py (runs jobs in ``dispatch``)."""

    name = "inline-test"

    async def submit(self, event: Event, listeners: tuple[Listener, ...], context: Context) -> None:
        event_id = uuid.uuid4().hex
        for listener in listeners:
            ctx = context.copy()
            job = Job(f"{event_id}/{listener.name}", event_id, event.event_name, listener.name, 1)
            set_current_job(ctx, job)
            while True:
                self.bus.stats.running += 1
                try:
                    exc = await run_attempt(listener, event, ctx)
                finally:
                    self.bus.stats.running -= 1
                if exc is None:
                    self.bus.stats.succeeded += 1
                    break
                delay = await self.bus.attempt_failed(listener, event, exc, job.attempt, ctx)
                if delay is None:
                    break
                job.attempt += 1
                await anyio.sleep(delay)


class Paid(Event):
    n: int


async def test_a_driver_written_against_base_only_retries_and_fails_through_the_bus() -> None:
    attempts: list[tuple[str, int]] = []
    failed: list[tuple[int, str | None]] = []
    reported: list[BaseException] = []

    class Charge(eventbus.EventListener):
        tries = 3
        backoff = 0

        async def handle(self, event: Paid) -> None:
            job = current_job()
            assert job is not None
            attempts.append((job.id, job.attempt))
            if event.n == 0 or job.attempt < 2:
                raise RuntimeError(f"attempt {job.attempt}")

        async def failed(self, event: Paid, exc: BaseException) -> None:
            job = current_job()
            failed.append((event.n, job.id if job else None))

    async def on_failure(event: Event, listener: Listener, exc: BaseException) -> None:
        reported.append(exc)

    bus = eventbus.EventBus(driver=InlineRetrying(), on_failure=on_failure)
    bus.listen(Paid)(Charge)
    await bus.dispatch(Paid(n=1))  # fails once, then succeeds
    assert [a for _, a in attempts] == [1, 2] and len({i for i, _ in attempts}) == 1
    await bus.dispatch(Paid(n=0))  # fails every try
    assert [a for _, a in attempts[2:]] == [1, 2, 3]
    assert failed == [(0, attempts[-1][0])]
    assert [str(e) for e in reported] == ["attempt 3"]
    stats = bus.stats
    assert (stats.succeeded, stats.failed, stats.retried, stats.running) == (1, 1, 3, 0)
