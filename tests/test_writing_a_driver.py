"""docs/examples/serial_driver.py, the complete driver of docs/writing-a-driver.md, works."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import anyio
import pytest

from eventbus import Event, EventBus, EventListener, RegistrationError, current_job

pytestmark = pytest.mark.anyio

EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "examples" / "serial_driver.py"
_spec = importlib.util.spec_from_file_location("serial_driver", EXAMPLE)
assert _spec is not None and _spec.loader is not None
serial_driver = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(serial_driver)
SerialDriver: Any = serial_driver.SerialDriver

runs: list[tuple[str, int, int]] = []
reported: list[int] = []
started: list[anyio.Event] = []


class Step(Event):
    n: int


class Flaky(EventListener):
    tries = 3
    backoff = 0.01
    timeout = 5

    async def handle(self, event: Step) -> None:
        job = current_job()
        assert job is not None
        runs.append((job.id, job.attempt, event.n))
        if (event.n < 0 and job.attempt < 3) or event.n == -9:
            raise ValueError(f"attempt {job.attempt}")

    async def failed(self, event: Step, exc: BaseException) -> None:
        reported.append(event.n)


class Slow(EventListener):
    timeout = 60

    async def handle(self, event: Step) -> None:
        started[-1].set()
        await anyio.sleep_forever()


def test_the_example_is_under_100_lines() -> None:
    assert len(EXAMPLE.read_text().splitlines()) < 100


async def test_jobs_run_in_order_retries_keep_the_id_and_the_last_failure_is_reported() -> None:
    runs.clear(), reported.clear()
    bus = EventBus({Step: [Flaky]}, driver=SerialDriver())
    async with bus:
        for n in (1, 2, -1, -9):
            await bus.dispatch(Step(n=n))
        await bus.join()
    assert [n for _, _, n in runs[:3]] == [1, 2, -1]  # in order until the first retry
    retried = [(job, attempt) for job, attempt, n in runs if n == -1]
    assert [a for _, a in retried] == [1, 2, 3] and len({j for j, _ in retried}) == 1
    assert reported == [-9]
    stats = bus.stats
    assert (stats.succeeded, stats.failed, stats.retried, stats.running) == (3, 1, 4, 0)


async def test_jobs_cancelled_at_exit_are_reported_as_dropped() -> None:
    started.append(anyio.Event())
    bus = EventBus({Step: [Slow]}, driver=SerialDriver())
    with anyio.move_on_after(30) as scope:
        async with bus:
            await bus.dispatch(Step(n=1))
            await bus.dispatch(Step(n=2))  # queued behind the slow one
            await started[-1].wait()
            scope.cancel()
    assert bus.stats.dropped == 2 and bus.stats.running == 0  # the running one and the queued one


def test_registration_without_a_timeout_is_refused() -> None:
    async def no_timeout(event: Step) -> None:
        pass

    with pytest.raises(RegistrationError, match="needs a timeout"):
        EventBus({Step: [no_timeout]}, driver=SerialDriver())
