"""Issue 10 defect 3: a job that kills its worker is isolated; the innocent jobs complete.

Real RabbitMQ, real ``eventbus work`` processes on ``tests/rabbitmq_app/b3_provider.py``,
restarted by a supervisor loop in the test as they die. Completion is observed by polling
the workers' result files and the dead-letter queue under a deadline (``wait_until``).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import json
import signal
import sys
import time
from pathlib import Path

import pytest

from eventbus import EventBus, context
from eventbus.drivers.rabbitmq import RabbitMQDriver
from eventbus.worker import ATTEMPTS_HEADER, ERROR_TYPE_HEADER, REASON_HEADER, Worker

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rabbitmq_app.b3_events import Fragile
from rabbitmq_app.b3_provider import events as b3_events
from rabbitmq_app.harness import URL_, WorkerProcess, depth, drain, results, wait_until
from rabbitmq_app.listeners import UserId

PROVIDER = "rabbitmq_app.b3_provider"

pytestmark = [pytest.mark.anyio, pytest.mark.rabbitmq]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Supervisor:
    """Keeps one ``eventbus work`` running, starting a new one each time it dies."""

    def __init__(self, queue: str, tmp_path: Path, *args: str) -> None:
        self.queue, self.tmp_path, self.args = queue, tmp_path, args
        self.results = tmp_path / "results"
        self.results.mkdir()
        self.workers: list[WorkerProcess] = []
        self.exits: list[int] = []
        self.stop = asyncio.Event()

    async def run(self) -> None:
        while not self.stop.is_set():
            log = self.tmp_path / f"worker-{len(self.workers)}.log"
            worker = WorkerProcess(self.queue, self.results, log, *self.args, provider=PROVIDER)
            self.workers.append(worker)
            # A process exit has no event to await: poll it, and the stop flag.
            while worker.proc.poll() is None and not self.stop.is_set():
                await asyncio.sleep(0.02)
            if worker.proc.returncode is not None:
                self.exits.append(worker.proc.returncode)

    def kill_all(self) -> None:
        for worker in self.workers:
            worker.kill()


async def test_crasher_is_dead_lettered_and_innocent_jobs_complete(
    queue: str, tmp_path: Path
) -> None:
    crasher, innocents = 7, [n for n in range(10) if n != 7]
    bus = EventBus(b3_events, driver=RabbitMQDriver(URL_, queue=queue))
    async with bus:
        for n in range(10):
            context.set(UserId, f"user-{n}")
            crash = n == crasher
            await bus.dispatch(Fragile(n=n, crash=crash, beside=len(innocents) if crash else 0))
    supervisor = Supervisor(queue, tmp_path, "--concurrency", "10", "--grace", "5")
    started = time.monotonic()
    task = asyncio.create_task(supervisor.run())
    try:

        async def settled() -> bool:
            done = {r.n for r in results(supervisor.results) if r.kind == "done"}
            dead, _ = await depth(f"{queue}.dead")
            return len(done) + dead >= 10  # on 0.1 the broker dead-letters all ten

        await wait_until(settled, 150, "9 jobs done and 1 dead-lettered (or 10 dead)", 0.1)
        took = time.monotonic() - started
        supervisor.stop.set()
        await task
        last = supervisor.workers[-1]
        code = last.proc.poll()
        if code is None:
            await last.ready()  # its SIGTERM handler is installed
            last.signal(signal.SIGTERM)
            code = await last.wait(15)
        records = results(supervisor.results)
        dead = await drain(f"{queue}.dead")
        left, _ = await depth(queue)
    finally:
        supervisor.stop.set()
        await asyncio.gather(task, return_exceptions=True)
        supervisor.kill_all()
    done = collections.Counter(r.n for r in records if r.kind == "done")
    crashes = [r for r in records if r.kind == "crash"]
    failed = [r for r in records if r.kind == "failed"]
    dead_n = [json.loads(m.body)["data"]["n"] for m in dead]
    duplicates = sum(c - 1 for c in done.values())
    print(
        f"\n[reliability] 1 crasher among 10 jobs, --concurrency 10: innocent completed="
        f"{len(done)}/9 duplicates={duplicates}, dead-lettered={dead_n}, worker crashes="
        f"{len(crashes)} (exits {supervisor.exits}), failed() calls={len(failed)}, "
        f"settled in {took:.1f}s"
    )
    assert sorted(done) == innocents, f"innocent jobs completed: {sorted(done)}"
    assert dead_n == [crasher], f"dead-lettered: {dead_n}"
    headers = dict(dead[0].headers)
    assert headers[REASON_HEADER] == "crashed its worker 2 times"
    assert headers[ERROR_TYPE_HEADER] == "eventbus.JobKilledWorker"
    assert headers[ATTEMPTS_HEADER] == 1
    # failed() ran once, in the job's context, with current_job() set (record() needs it).
    assert [(r.n, r.extra, r.user) for r in failed] == [(crasher, "JobKilledWorker", "user-7")]
    assert {r.job for r in crashes} == {failed[0].job}
    assert len(crashes) == 3  # once beside the innocents, then twice alone (crash_limit 2)
    assert supervisor.exits[:3] == [1, 1, 1]
    assert left == 0
    assert code == 0, "the last worker, which dead-lettered the crasher, stops cleanly"


def test_crash_limit_is_validated() -> None:
    bus = EventBus(b3_events, driver=RabbitMQDriver(URL_, queue="unused"))
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="crash_limit must be an int >= 1"):
            Worker(bus, crash_limit=bad)  # type: ignore[arg-type]
    assert Worker(bus, crash_limit=1).crash_limit == 1


def test_give_up_after_is_validated() -> None:
    bus = EventBus(b3_events, driver=RabbitMQDriver(URL_, queue="unused"))
    for bad in (float("nan"), float("inf"), -1, 0, "300"):
        with pytest.raises(ValueError, match="give_up_after"):
            Worker(bus, give_up_after=bad)  # type: ignore[arg-type]
    assert Worker(bus, give_up_after=None).give_up_after is None


async def test_sigterm_during_a_run_alone_is_not_a_strike(queue: str, tmp_path: Path) -> None:
    """A deploy that interrupts a slow suspect twice must not dead-letter it (crash_limit 2)."""
    results_dir = tmp_path / "results"
    results_dir.mkdir()
    workers: list[WorkerProcess] = []

    def start(*args: str) -> WorkerProcess:
        log = tmp_path / f"worker-{len(workers)}.log"
        worker = WorkerProcess(queue, results_dir, log, *args, provider=PROVIDER)
        workers.append(worker)
        return worker

    def starts() -> list[int]:
        return [r.pid for r in results(results_dir) if r.kind == "start"]

    def started(pid: int) -> bool:
        return pid in starts()

    bus = EventBus(b3_events, driver=RabbitMQDriver(URL_, queue=queue))
    async with bus:
        await bus.dispatch(Fragile(n=1, seconds=120))
    try:
        first = start("--concurrency", "10")
        await wait_until(lambda: first.pid in starts(), 30, "the first run")
        first.signal(signal.SIGKILL)  # now the job is a suspect, as beside a crasher
        assert await first.wait(10) == -signal.SIGKILL
        codes = []
        for _ in range(2):  # two deploys, each while the suspect runs alone
            worker = start("--concurrency", "10", "--grace", "0.5")
            await worker.ready()
            await wait_until(functools.partial(started, worker.pid), 30, "the run alone")
            worker.signal(signal.SIGTERM)
            codes.append(await worker.wait(15))
        last = start("--concurrency", "10")
        await wait_until(
            lambda: last.pid in starts() or "dead-lettering" in last.output(), 30, "a 4th run"
        )
        dead, _ = await depth(f"{queue}.dead")
    finally:
        for worker in workers:
            worker.kill()
    records = results(results_dir)
    alone = sorted((r for r in records if r.kind == "start" and r.redelivered), key=lambda r: r.at)
    print(
        f"\n[reliability] slow suspect interrupted by 2 SIGTERMs while running alone: exits "
        f"{codes}, runs {len(starts())} ({len(alone)} alone), dead-lettered={dead}"
    )
    assert codes == [0, 0]
    assert dead == 0 and not [r for r in records if r.kind == "failed"]
    assert [r.pid for r in alone] == [w.pid for w in workers[1:]]
