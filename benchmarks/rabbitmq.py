"""End-to-end throughput through RabbitMQ: ``python -m benchmarks.rabbitmq``.

``dispatch`` -> broker -> ``eventbus work`` process -> listener run, with 1 and 4 worker
processes, against a raw aio-pika loop doing the same on the same broker in the same run:
publish with confirms from the same number of concurrent publishers, consume from the same
kind of queue (quorum) with the same prefetch, ack after the same listener work (one
``os.write`` per job to a per-process file, which is also how completion is counted).
Rounds alternate raw and eventbus so drift hits both alike; medians are reported.

Kept apart from the in-process rows (``rows_*``): it needs a broker and worker processes,
and one round takes seconds, not the harness's 0.25 s.

This module is also the workers' provider (``--provider benchmarks.rabbitmq``).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from eventbus import Event

ROOT = Path(__file__).resolve().parent.parent
URL = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
PUBLISHERS = 100
PREFETCH = 50

# -- the provider the eventbus workers load ----------------------------------------------------


class Tick(Event):
    n: int
    note: str = "benchmark"


_fd: int | None = None


def _mark() -> None:
    global _fd
    if _fd is None:
        directory = os.environ["EVENTBUS_BENCH_RESULTS"]
        _fd = os.open(f"{directory}/{os.getpid()}.bin", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.write(_fd, b".")


async def on_tick(event: Tick) -> None:
    _mark()


events = {Tick: [on_tick]}


# -- the raw loop's consumer (python -m benchmarks.rabbitmq --raw-consumer QUEUE) ---------------


async def raw_consumer(queue: str) -> None:
    import signal

    import aio_pika

    connection = await aio_pika.connect_robust(URL)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=PREFETCH)
        declared = await channel.declare_queue(queue, durable=True, arguments=_arguments(queue))

        async def handle(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            _mark()
            await message.ack()

        await declared.consume(handle)
        print("consuming", flush=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()


def _arguments(queue: str) -> dict[str, Any]:
    from eventbus.drivers.rabbitmq import Topology

    return Topology(queue).work_arguments()


# -- the runs --------------------------------------------------------------------------------


def _start(kind: str, queue: str, results: Path, log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, EVENTBUS_BENCH_RESULTS=str(results), RABBITMQ_URL=URL)
    if kind == "raw":
        args = ["-m", "benchmarks.rabbitmq", "--raw-consumer", queue]
    else:
        args = ["-m", "eventbus", "work", "--provider", "benchmarks.rabbitmq", "--queue", queue]
        args += ["--concurrency", str(PREFETCH), "--stats-interval", "3600"]
    return subprocess.Popen(
        [sys.executable, *args], cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )


async def _ready(procs: list[subprocess.Popen[bytes]], logs: list[Path]) -> None:
    deadline = time.monotonic() + 30
    for proc, log in zip(procs, logs, strict=True):
        while not any(s in log.read_text() for s in ("consuming", "worker consuming queue")):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"consumer did not start:\n{log.read_text()}")
            await asyncio.sleep(0.05)


def _done(results: Path) -> int:
    return sum(p.stat().st_size for p in results.glob("*.bin"))


async def one_round(kind: str, workers: int, n: int, work: Path) -> float:
    """Jobs per second for ``n`` events, first publish to last listener run."""
    import aio_pika

    from eventbus import EventBus
    from eventbus.drivers import _wire
    from eventbus.drivers.rabbitmq import RabbitMQDriver, Topology

    # The listeners must carry the names the workers import: benchmarks.rabbitmq.on_tick,
    # not __main__.on_tick when this file runs as `python -m benchmarks.rabbitmq`.
    provider = importlib.import_module("benchmarks.rabbitmq")
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    results = work / queue
    results.mkdir()
    logs = [work / f"{queue}-{i}.log" for i in range(workers)]
    procs = [_start(kind, queue, results, log) for log in logs]
    try:
        bus = EventBus(provider.events, driver=RabbitMQDriver(URL, queue=queue))
        async with bus:
            await _ready(procs, logs)
            # the raw loop publishes a body of the same size as eventbus's envelope
            sample = provider.Tick(n=n)
            body = _wire.encode(
                job=uuid.uuid4().hex,
                event_id=uuid.uuid4().hex,
                event_name=sample.event_name,
                listener="benchmarks.rabbitmq.on_tick",
                attempt=1,
                dispatched_at=time.time(),
                context={},
                data=sample.model_dump_json().encode(),
            )
            ticks = [provider.Tick(n=i) for i in range(n)]
            channel = await bus.driver.connection.channel(  # type: ignore[attr-defined]
                publisher_confirms=True, on_return_raises=True
            )
            exchange = channel.default_exchange
            it = iter(range(n))

            async def raw_pump() -> None:
                for _ in it:
                    await exchange.publish(
                        aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                        queue,
                        mandatory=True,
                    )

            async def bus_pump() -> None:
                for i in it:
                    await bus.dispatch(ticks[i])

            pump = raw_pump if kind == "raw" else bus_pump
            started = time.perf_counter()
            await asyncio.gather(*(pump() for _ in range(PUBLISHERS)))
            deadline = time.monotonic() + 120
            while _done(results) < n:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{kind}: only {_done(results)} of {n} jobs ran in 120s")
                await asyncio.sleep(0.005)
            elapsed = time.perf_counter() - started
            if _done(results) != n:
                raise RuntimeError(f"{kind}: {_done(results)} listener runs for {n} events")
            await channel.close()
            for name in (queue, Topology(queue).dead):
                side = await bus.driver.connection.channel()  # type: ignore[attr-defined]
                await side.queue_delete(name)
                await side.close()
        return n / elapsed
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)


async def run(n: int, rounds: int, worker_counts: list[int]) -> list[dict[str, Any]]:
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for workers in worker_counts:
            rates: dict[str, list[float]] = {"raw": [], "eventbus": []}
            for r in range(rounds):
                for kind in ("raw", "eventbus") if r % 2 == 0 else ("eventbus", "raw"):
                    rate = await one_round(kind, workers, n, work)
                    rates[kind].append(rate)
                    print(
                        f"[bench rabbitmq] {workers} worker(s) {kind:8} round {r + 1}: "
                        f"{rate:,.0f} jobs/s",
                        file=sys.stderr,
                        flush=True,
                    )
            raw, ours = statistics.median(rates["raw"]), statistics.median(rates["eventbus"])
            out.append(
                {
                    "workers": workers,
                    "events": n,
                    "rounds": rounds,
                    "raw_jobs_per_s": raw,
                    "eventbus_jobs_per_s": ours,
                    "ratio": ours / raw,
                    "raw_all": rates["raw"],
                    "eventbus_all": rates["eventbus"],
                }
            )
    return out


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| workers | raw aio-pika (jobs/s) | eventbus (jobs/s) | eventbus / raw |",
        "|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['workers']} | {row['raw_jobs_per_s']:,.0f} | "
            f"{row['eventbus_jobs_per_s']:,.0f} | {row['ratio']:.0%} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rabbitmq", description=__doc__)
    parser.add_argument("--events", type=int, default=10_000, help="events per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per side (median)")
    parser.add_argument("--workers", default="1,4", help="worker process counts, e.g. 1,4")
    parser.add_argument("--json", type=Path, help="write the results as JSON here")
    parser.add_argument("--raw-consumer", metavar="QUEUE", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.raw_consumer:
        asyncio.run(raw_consumer(args.raw_consumer))
        return 0
    counts = [int(c) for c in args.workers.split(",")]
    rows = asyncio.run(run(args.events, args.rounds, counts))
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
