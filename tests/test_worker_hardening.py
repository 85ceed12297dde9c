"""Issue 10, defect 1: nothing a message or a listener does turns a worker into a zombie.

Each trigger measured on 0.1 ended a job runner silently (the process stayed up, the message
stayed unacked). Each test runs a real ``eventbus work --concurrency 1`` process on the real
broker, feeds it the trigger, then one good job: the good job can only run if the single
runner survived. Completion is observed through the listeners' result files and the
dead-letter queue, polled under a deadline (``wait_until``).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import aiormq
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rabbitmq_app.harness import (
    URL_,
    Record,
    depth,
    drain,
    envelope,
    results,
    wait_until,
)

from eventbus import EventBus, context
from eventbus.drivers._runner import Names
from eventbus.drivers.rabbitmq import RabbitMQDriver
from eventbus.worker import ATTEMPTS_HEADER, ERROR_TYPE_HEADER, REASON_HEADER, Worker

pytestmark = [pytest.mark.anyio, pytest.mark.rabbitmq]

APP = "rabbitmq_app.b1_app"
L = "rabbitmq_app.b1_app."


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def job(event_name: str, listener: str, data: bytes, **change: Any) -> bytes:
    return envelope(event_name=event_name, listener=L + listener, data=data, **change)


def good(n: int) -> bytes:
    return job("b1_job", "B1Record", b'{"n":%d}' % n, job=f"good-{n}")


async def publish(queue: str, *bodies: bytes) -> None:
    """Publish raw bodies to ``queue`` in order, each confirmed."""
    connection = await aio_pika.connect(URL_)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        for i, body in enumerate(bodies):
            await channel.default_exchange.publish(
                aio_pika.Message(body, message_id=f"m{i}"), queue
            )


def kinds(workers: Any, kind: str) -> list[Record]:
    return [r for r in results(workers.results) if r.kind == kind]


async def dead_letters(queue: str, count: int) -> list[Any]:
    async def ready() -> bool:
        return (await depth(f"{queue}.dead"))[0] >= count

    await wait_until(ready, 20, f"{count} dead letter(s)")
    return await drain(f"{queue}.dead")


async def the_runner_survives(queue: str, workers: Any, worker: Any, n: int = 1) -> None:
    """Publish a good job after the trigger: it runs only if the one runner still runs."""
    await publish(queue, good(n))
    await wait_until(
        lambda: any(r.n == n for r in kinds(workers, "done")), 20, f"good job {n} after the trigger"
    )
    assert worker.proc.poll() is None, worker.output()


async def start_one(workers: Any) -> Any:
    (worker,) = await workers(1, "--concurrency", "1", provider=APP)
    return worker


async def test_nested_json_body_is_dead_lettered_and_the_next_job_runs(
    queue: str, workers: Any
) -> None:
    worker = await start_one(workers)
    nested = b"[" * 100_000 + b"]" * 100_000  # 200 KB: RecursionError in json.loads
    await publish(queue, nested)
    await the_runner_survives(queue, workers, worker)
    (dead,) = await dead_letters(queue, 1)
    assert "nested too deeply" in str(dead.headers[REASON_HEADER])
    assert dead.body == nested


async def test_context_key_empty_string_is_ignored_and_the_job_runs(
    queue: str, workers: Any
) -> None:
    worker = await start_one(workers)
    body = job(
        "b1_job", "B1Record", b'{"n":7}', context={"": "x", "user_id": "u7"}
    )  # "" raised TypeError in context.install
    await publish(queue, body)
    await wait_until(lambda: kinds(workers, "done"), 20, "the job with a '' context key")
    (done,) = kinds(workers, "done")
    assert (done.n, done.user) == (7, "u7")  # the defined key still travels
    await the_runner_survives(queue, workers, worker, n=8)
    assert "context key(s) '' that this worker never defined" in worker.output()


async def test_context_keys_the_worker_never_defined_are_ignored_with_one_warning(
    queue: str, workers: Any
) -> None:
    worker = await start_one(workers)
    bodies = [
        job("b1_job", "B1Record", b'{"n":%d}' % n, job=f"j{n}", context={"tenant_zz": n})
        for n in range(10, 13)
    ]
    await publish(queue, *bodies)
    await wait_until(lambda: len(kinds(workers, "done")) == 3, 20, "3 jobs with unknown keys")
    await the_runner_survives(queue, workers, worker, n=13)
    # Warned once for the name, not per message (the set of reported names is bounded).
    assert worker.output().count("'tenant_zz' that this worker never defined") == 1


async def test_nan_dispatched_at_is_dead_lettered_instead_of_crashing_the_retry(
    queue: str, workers: Any
) -> None:
    worker = await start_one(workers)
    body = job("b1_fails_once", "FailsOnce", b'{"n":3}').replace(b'"at":0.0', b'"at":NaN')
    assert b'"at":NaN' in body
    await publish(queue, body)
    await the_runner_survives(queue, workers, worker)
    (dead,) = await dead_letters(queue, 1)
    assert "NaN is not JSON" in str(dead.headers[REASON_HEADER])
    assert not kinds(workers, "attempt")  # refused before it ran: it could not be retried


async def test_infinite_backoff_is_the_last_attempt_not_a_dead_runner(
    queue: str, workers: Any
) -> None:
    worker = await start_one(workers)
    await publish(queue, job("b1_bad_backoff", "BadBackoff", b'{"n":4}'))
    await the_runner_survives(queue, workers, worker)
    (dead,) = await dead_letters(queue, 1)
    reason = str(dead.headers[REASON_HEADER])
    assert reason.startswith("failed; no retry possible") and "inf" in reason, reason
    assert dead.headers[ERROR_TYPE_HEADER] == "builtins.RuntimeError"
    assert [r.n for r in kinds(workers, "attempt")] == [4]
    assert [(r.n, r.extra) for r in kinds(workers, "failed")] == [(4, "RuntimeError")]


async def test_listener_raising_cancelled_error_is_a_failure_retried_then_dead_lettered(
    queue: str, workers: Any
) -> None:
    worker = await start_one(workers)
    await publish(queue, job("b1_cancel", "RaisesCancelled", b'{"n":5}'))
    (dead,) = await dead_letters(queue, 1)
    await the_runner_survives(queue, workers, worker)
    assert [r.attempt for r in kinds(workers, "attempt")] == [1, 2]  # tries = 2
    # failed() gets the wrapper every driver passes (eventbus.ListenerBaseException); the
    # dead letter names what the listener raised.
    assert [(r.n, r.extra) for r in kinds(workers, "failed")] == [(5, "ListenerBaseException")]
    assert str(dead.headers[REASON_HEADER]) == "failed"
    assert dead.headers[ERROR_TYPE_HEADER] == "asyncio.exceptions.CancelledError"
    assert dead.headers[ATTEMPTS_HEADER] == 2


async def test_listener_cancelling_its_own_task_is_a_failure(queue: str, workers: Any) -> None:
    worker = await start_one(workers)
    await publish(queue, job("b1_self_cancel", "CancelsItself", b'{"n":6}'))
    (dead,) = await dead_letters(queue, 1)
    await the_runner_survives(queue, workers, worker)
    assert [r.attempt for r in kinds(workers, "attempt")] == [1, 2]
    assert [(r.n, r.extra) for r in kinds(workers, "failed")] == [(6, "ListenerBaseException")]
    assert dead.headers[ERROR_TYPE_HEADER] == "asyncio.exceptions.CancelledError"


async def test_message_over_max_message_size_is_dead_lettered_not_run(
    queue: str, workers: Any
) -> None:
    worker = await start_one(workers)  # the driver's default max_message_size: 1 MiB
    big = job("b1_coded", "RecordCoded", b'{"code":"%s"}' % (b"x" * 2_000_000))
    await publish(queue, big)
    await the_runner_survives(queue, workers, worker)
    (dead,) = await dead_letters(queue, 1)
    assert "over max_message_size=1048576" in str(dead.headers[REASON_HEADER])
    assert not [r for r in kinds(workers, "done") if r.extra != "-"]  # RecordCoded never ran


async def test_validator_raising_a_non_value_error_is_dead_lettered(
    queue: str, workers: Any
) -> None:
    worker = await start_one(workers)
    await publish(queue, job("b1_coded", "RecordCoded", b'{"code":"boom"}'))
    await the_runner_survives(queue, workers, worker)
    (dead,) = await dead_letters(queue, 1)
    reason = str(dead.headers[REASON_HEADER])
    assert "schema mismatch for B1Coded" in reason and "LookupError" in reason, reason


async def test_every_trigger_in_one_queue_leaves_the_runner_running(
    queue: str, workers: Any
) -> None:
    """All the triggers back to back, then 100 good jobs: all run, each trigger settled."""
    worker = await start_one(workers)
    triggers = [
        b"[" * 100_000 + b"]" * 100_000,
        job("b1_job", "B1Record", b'{"n":1000}', context={"": "x"}),
        job("b1_fails_once", "FailsOnce", b'{"n":1001}').replace(b'"at":0.0', b'"at":NaN'),
        job("b1_bad_backoff", "BadBackoff", b'{"n":1002}'),
        job("b1_cancel", "RaisesCancelled", b'{"n":1003}'),
        job("b1_self_cancel", "CancelsItself", b'{"n":1004}'),
        job("b1_coded", "RecordCoded", b'{"code":"%s"}' % (b"x" * 2_000_000)),
        job("b1_coded", "RecordCoded", b'{"code":"boom"}'),
    ]
    await publish(queue, *triggers, *(good(n) for n in range(100)))
    await wait_until(
        lambda: len({r.n for r in kinds(workers, "done") if r.n < 100}) == 100, 30, "100 good jobs"
    )
    dead = await dead_letters(queue, 7)  # all but the "" context key job, which ran
    assert len(dead) == 7
    assert worker.proc.poll() is None
    assert (await depth(queue))[0] == 0


# -- in-process: a Worker on the real broker, to look inside the process ---------------------


@contextlib.asynccontextmanager
async def running_worker(queue: str) -> AsyncIterator[Worker]:
    from rabbitmq_app import b1_app

    bus = EventBus(b1_app.events, driver=RabbitMQDriver(URL_, queue=queue))
    worker = Worker(bus, concurrency=1)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        await asyncio.wait_for(worker.consuming.wait(), 20)
        yield worker
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


async def test_context_keys_from_messages_are_not_interned(queue: str) -> None:
    names = [f"zz_from_the_wire_{uuid.uuid4().hex}" for _ in range(50)]
    bodies = [
        job("b1_job", "B1Record", b'{"n":%d}' % n, job=f"j{n}", context={name: n})
        for n, name in enumerate(names)
    ]
    async with running_worker(queue) as worker:
        await publish(queue, *bodies)
        await wait_until(lambda: worker.report.succeeded == 50, 20, "50 jobs")
    keys = context.keys()
    assert not {key.name for key in keys} & set(names)  # 0.1 made a ContextKey per name


async def test_unknown_event_names_do_not_rescan_the_event_classes(
    queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    scans = 0
    load = Names.load

    def counting(self: Names) -> None:
        nonlocal scans
        scans += 1
        load(self)

    monkeypatch.setattr(Names, "load", counting)
    unknown = [job(f"no_such_event_{n}", "B1Record", b'{"n":1}', job=f"u{n}") for n in range(30)]
    async with running_worker(queue) as worker:
        await publish(queue, *unknown)
        await wait_until(lambda: worker.report.dead_lettered == 30, 20, "30 dead letters")
        assert scans == 1  # the scan at start; 0.1 rescanned for every unknown name (31)

        # A class created after the start is still found: creating it moves the signature.
        from rabbitmq_app.b1_app import B1Job

        class B1Late(B1Job):  # routed to B1Record through B1Job
            pass

        await publish(queue, job(B1Late.event_name, "B1Record", b'{"n":2}', job="late"))
        await wait_until(lambda: worker.report.succeeded == 1, 20, "the late class's job")
        assert scans == 2
    dead = await drain(f"{queue}.dead")
    assert len(dead) == 30
    assert all("unknown event 'no_such_event_" in str(m.headers[REASON_HEADER]) for m in dead)


# -- connection blips through a proxy the test controls --------------------------------------


async def test_connection_cut_while_acking_loses_nothing_and_the_worker_keeps_consuming(
    queue: str, workers: Any
) -> None:
    from rabbitmq_app.events import Slow
    from rabbitmq_app.harness import PROVIDER
    from rabbitmq_app.proxy import Proxy

    total, cuts = 600, 3
    async with Proxy() as proxy:
        bodies = [
            envelope(
                job=f"s{n}",
                event_name="slow",
                listener="rabbitmq_app.listeners.SlowRecord",
                data=Slow(n=n, seconds=0.1).model_dump_json().encode(),
            )
            for n in range(total)
        ]
        async with EventBus(driver=RabbitMQDriver(URL_, queue=queue)):
            pass  # declares the queues, so the jobs can wait there before the worker starts
        await publish(queue, *bodies)
        (worker,) = await workers(1, "--concurrency", "20", "--url", proxy.url(), provider=PROVIDER)
        for k in range(1, cuts + 1):
            # Each cut lands while jobs run and acks flow: after another 100 completions.
            await wait_until(
                lambda k=k: len({r.n for r in kinds(workers, "done")}) >= 100 * k,
                60,
                f"{100 * k} jobs done before cut {k}",
            )
            assert proxy.cut() == 1, worker.output()[-3000:]  # the worker's connection
        await wait_until(
            lambda: len({r.n for r in kinds(workers, "done")}) == total,
            90,
            "every job, after the cuts",
        )
        done = kinds(workers, "done")
        counts: dict[int, int] = {}
        for r in done:
            counts[r.n] = counts.get(r.n, 0) + 1
        duplicates = sum(c - 1 for c in counts.values())
        await wait_until(lambda: _settled(queue), 20, "no message left in the queue")
        reconnects = worker.output().count("reconnected to RabbitMQ after")
        print(
            f"\n[reliability] {cuts} connection cuts under load ({total} jobs, concurrency 20): "
            f"lost=0 of {total}, duplicates={duplicates}, reconnects={reconnects}, "
            f"worker alive={worker.proc.poll() is None}"
        )
        assert set(counts) == set(range(total))
        assert reconnects == cuts
        assert worker.proc.poll() is None
        assert duplicates <= 20 * cuts  # at most what was in flight at each cut runs twice
        # And it still consumes, with all its runners: 20 slow jobs run at once.
        await publish(
            queue,
            *(
                envelope(
                    job=f"after{n}",
                    event_name="slow",
                    listener="rabbitmq_app.listeners.SlowRecord",
                    data=Slow(n=10_000 + n, seconds=3).model_dump_json().encode(),
                )
                for n in range(20)
            ),
        )
        await wait_until(
            lambda: len({r.n for r in kinds(workers, "start") if r.n >= 10_000}) == 20,
            20,
            "20 jobs running at once after the cuts (every runner alive)",
        )


async def _settled(queue: str) -> bool:
    ready, consumers = await depth(queue)
    return ready == 0 and consumers == 1


async def test_ack_raising_a_connection_error_does_not_end_the_runner(
    queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The blip's ``AMQPConnectionError`` from ``message.ack()``, raised on demand."""
    failures = 0
    real_ack = aio_pika.IncomingMessage.ack

    async def flaky_ack(self: aio_pika.IncomingMessage, multiple: bool = False) -> None:
        nonlocal failures
        if self.message_id == "m0" and not failures:
            failures += 1
            raise aiormq.exceptions.AMQPConnectionError("Server connection unexpectedly closed")
        await real_ack(self, multiple)

    monkeypatch.setattr(aio_pika.IncomingMessage, "ack", flaky_ack)
    async with running_worker(queue) as worker:
        await publish(queue, good(1), good(2))
        # Job 1 ran, its ack failed: it is handed back and runs again; job 2 runs after it.
        await wait_until(lambda: worker.report.succeeded == 3, 20, "3 runs (one repeated)")
        await wait_until(lambda: _settled(queue), 20, "the queue settled")
    assert failures == 1


# -- a worker that cannot go on exits non-zero -------------------------------------------------


async def test_a_bug_escaping_a_job_is_dead_lettered_and_the_runner_goes_on(
    queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = Worker._handle

    async def buggy(self: Worker, message: aio_pika.IncomingMessage) -> None:
        if message.message_id == "m0":
            raise KeyError("a bug in the worker")
        await real(self, message)

    monkeypatch.setattr(Worker, "_handle", buggy)
    async with running_worker(queue) as worker:
        await publish(queue, good(1), good(2))
        await wait_until(lambda: worker.report.succeeded == 1, 20, "the job after the bug")
    (dead,) = await drain(f"{queue}.dead")
    assert str(dead.headers[REASON_HEADER]) == "worker error: KeyError: 'a bug in the worker'"
    assert dead.headers[ERROR_TYPE_HEADER] == "builtins.KeyError"


async def test_a_worker_whose_runner_cannot_settle_a_job_exits_non_zero(
    queue: str, workers: Any
) -> None:
    (worker,) = await workers(1, "--concurrency", "2", provider="rabbitmq_app.b1_broken")
    await publish(queue, good(1))
    code = await worker.wait(20)  # 0.1: the runner died silently, the process stayed up
    output = worker.output()
    assert code != 0, output
    assert "CRITICAL eventbus: eventbus worker: could not settle job m0" in output
    assert "WorkerCrashed" in output

    async def requeued() -> bool:
        return (await depth(queue))[0] == 1

    await wait_until(requeued, 20, "the job back in the queue")  # nothing lost


async def test_a_worker_that_cannot_reconnect_stops_with_worker_crashed(queue: str) -> None:
    from rabbitmq_app import b1_app
    from rabbitmq_app.proxy import Proxy

    from eventbus.worker import WorkerCrashed

    async with EventBus(driver=RabbitMQDriver(URL_, queue=queue)):
        pass  # the queues exist before the worker connects through the proxy
    async with Proxy() as proxy:
        bus = EventBus(b1_app.events, driver=RabbitMQDriver(proxy.url(), queue=queue))
        worker = Worker(bus, concurrency=1, give_up_after=1.0)
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        try:
            await asyncio.wait_for(worker.consuming.wait(), 20)
            proxy.accepting = False  # the broker is gone for good
            assert proxy.cut() == 1
            with pytest.raises(WorkerCrashed, match=r"no RabbitMQ connection for 1\.0s"):
                await asyncio.wait_for(task, 30)
        finally:
            stop.set()
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
