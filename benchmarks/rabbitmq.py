"""RabbitMQ: ``python -m benchmarks.rabbitmq [--throughput|--latency|--callgrind|--all]``.

Three rows, same broker, same run, same guarantees (persistent messages, publisher confirms,
``mandatory``, a quorum queue, prefetch 50, ack after the listener ran):

- **raw aio-pika**: ``Message(event.model_dump_json().encode(), PERSISTENT)`` published on a
  confirming channel; the consumer validates the body back into the event
  (``Tick.model_validate_json``), runs the listener, acks;
- **eventbus**: ``await bus.dispatch(event)`` with the rabbitmq driver; ``eventbus work``;
- **FastStream**: ``await broker.publish(event, queue, persist=True)`` (confirms are its
  channel default); a ``@broker.subscriber`` with ``AckPolicy.ACK`` and a typed handler.

The listener work is the same everywhere: one 8-byte ``os.write`` of ``time.monotonic_ns()``
per job to a per-process file, which is also how completion and start times are read.

- ``--throughput``: jobs/s for ``--events`` events, first publish to last listener run,
  from 100 concurrent publishers, with 1 and 4 worker processes; rounds rotate the order of
  the rows, the table shows medians and per-round ratios to raw.
- ``--latency``: dispatch-to-start at light load: one event at a time, 2 ms apart, the time
  from just before ``dispatch``/``publish`` to the listener's first line (CLOCK_MONOTONIC is
  one clock for all processes); p50/p99 over all rounds.
- ``--callgrind``: instructions per job of the producer's whole publish and the worker's
  whole consume, and a breakdown of eventbus's parts (:mod:`benchmarks._callgrind`).

Kept apart from the in-process rows (``rows_*``): it needs a broker and worker processes.
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
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from eventbus import Event

ROOT = Path(__file__).resolve().parent.parent
URL = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
PUBLISHERS = 100
PREFETCH = 50
KINDS = ("raw", "eventbus", "faststream")
LABELS = {"raw": "raw aio-pika", "eventbus": "eventbus", "faststream": "FastStream"}

# -- the provider the eventbus workers load ----------------------------------------------------


class Tick(Event):
    n: int
    note: str = "benchmark"


_fd: int | None = None
#: Set by a process that must stop after a number of jobs (the callgrind consumers).
goal: list[Any] = []  # [jobs_left, asyncio.Event]


def _mark() -> None:
    global _fd
    if _fd is None:
        directory = os.environ["EVENTBUS_BENCH_RESULTS"]
        _fd = os.open(f"{directory}/{os.getpid()}.bin", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.write(_fd, time.monotonic_ns().to_bytes(8, "little"))
    if goal:
        goal[0] -= 1
        if goal[0] == 0:
            goal[1].set()


async def on_tick(event: Tick) -> None:
    _mark()


events = {Tick: [on_tick]}


def work_arguments(queue: str) -> dict[str, Any]:
    """The eventbus work queue's arguments: every row consumes the same kind of queue."""
    from eventbus.drivers.rabbitmq import Topology

    return Topology(queue).work_arguments()


# -- the raw loop's and FastStream's consumers (worker processes) ------------------------------


async def raw_consume(queue: str, stop: asyncio.Event) -> None:
    import aio_pika

    connection = await aio_pika.connect_robust(URL)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=PREFETCH)
        declared = await channel.declare_queue(queue, durable=True, arguments=work_arguments(queue))
        validate = Tick.model_validate_json

        async def handle(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            await on_tick(validate(message.body))
            await message.ack()

        await declared.consume(handle)
        print("consuming", flush=True)
        await stop.wait()


async def faststream_consume(queue: str, stop: asyncio.Event) -> None:
    from faststream import AckPolicy
    from faststream.rabbit import Channel, QueueType, RabbitBroker, RabbitQueue

    broker = RabbitBroker(URL, default_channel=Channel(prefetch_count=PREFETCH), logger=None)
    declared = RabbitQueue(
        queue, queue_type=QueueType.QUORUM, durable=True, arguments=work_arguments(queue)
    )

    @broker.subscriber(declared, ack_policy=AckPolicy.ACK)
    async def handle(event: Tick) -> None:
        await on_tick(event)

    async with broker:
        await broker.start()
        print("consuming", flush=True)
        await stop.wait()


def serve(kind: str, queue: str) -> None:
    """A worker process of the raw or FastStream row, until SIGTERM."""
    import signal

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await (raw_consume if kind == "raw" else faststream_consume)(queue, stop)

    asyncio.run(main())


# -- producers: the same three rows, publishing ------------------------------------------------


class Producer:
    """One row's publishing side, connected; ``send(tick)`` returns once confirmed."""

    def __init__(self, kind: str, queue: str, *, keep: bool = False) -> None:
        self.kind = kind
        self.queue = queue
        self.keep = keep  # leave the queue and its messages (for a consumer to come)
        self.send: Callable[[Tick], Awaitable[Any]]
        self._close: list[Callable[[], Awaitable[Any]]] = []

    async def __aenter__(self) -> Producer:
        # The listeners must carry the names the workers import: benchmarks.rabbitmq.on_tick,
        # not __main__.on_tick when this file runs as `python -m benchmarks.rabbitmq`.
        provider = importlib.import_module("benchmarks.rabbitmq")
        from eventbus import EventBus
        from eventbus.drivers.rabbitmq import RabbitMQDriver

        # The eventbus bus declares the queues in every row, so all consume the same kind.
        bus = EventBus(
            provider.events,
            driver=RabbitMQDriver(URL, queue=self.queue, connect_timeout=120, publish_timeout=120),
        )
        await bus.__aenter__()
        self.bus = bus
        self._close.append(lambda: bus.__aexit__(None, None, None))
        if self.kind == "eventbus":
            self.send = bus.dispatch
        elif self.kind == "raw":
            import aio_pika

            channel = await bus.driver.connection.channel(  # type: ignore[attr-defined]
                publisher_confirms=True, on_return_raises=True
            )
            self._close.insert(0, channel.close)
            exchange, queue = channel.default_exchange, self.queue
            persistent = aio_pika.DeliveryMode.PERSISTENT
            message = aio_pika.Message

            async def send(tick: Tick) -> None:
                body = tick.model_dump_json().encode()
                await exchange.publish(
                    message(body, delivery_mode=persistent), queue, mandatory=True
                )

            self.send = send
        else:
            from faststream.rabbit import RabbitBroker

            broker = RabbitBroker(URL, logger=None)
            await broker.connect()
            self._close.insert(0, broker.stop)
            queue = self.queue

            async def send(tick: Tick) -> None:
                await broker.publish(tick, queue, persist=True)

            self.send = send
        return self

    async def __aexit__(self, *exc: object) -> None:
        from eventbus.drivers.rabbitmq import Topology

        if exc[0] is None and not self.keep:
            for name in (self.queue, Topology(self.queue).dead):
                side = await self.bus.driver.connection.channel()  # type: ignore[attr-defined]
                await side.queue_delete(name)
                await side.close()
        for close in self._close:
            await close()


# -- worker processes --------------------------------------------------------------------------


def _start(kind: str, queue: str, results: Path, log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, EVENTBUS_BENCH_RESULTS=str(results), RABBITMQ_URL=URL)
    if kind == "eventbus":
        args = ["-m", "eventbus", "work", "--provider", "benchmarks.rabbitmq", "--queue", queue]
        args += ["--concurrency", str(PREFETCH), "--stats-interval", "3600"]
    else:
        args = ["-m", "benchmarks.rabbitmq", "--serve", kind, queue]
    return subprocess.Popen(
        [sys.executable, *args], cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )


async def _ready(procs: list[subprocess.Popen[bytes]], logs: list[Path]) -> None:
    deadline = time.monotonic() + 60
    for proc, log in zip(procs, logs, strict=True):
        while not any(s in log.read_text() for s in ("consuming", "worker consuming queue")):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"consumer did not start:\n{log.read_text()}")
            await asyncio.sleep(0.05)


def _starts(results: Path) -> list[int]:
    """Every job's listener start (monotonic ns), all worker processes."""
    out: list[int] = []
    for path in results.glob("*.bin"):
        data = path.read_bytes()
        out += [int.from_bytes(data[i : i + 8], "little") for i in range(0, len(data), 8)]
    return out


def _done(results: Path) -> int:
    return sum(p.stat().st_size for p in results.glob("*.bin")) // 8


class Workers:
    """``count`` worker processes of one row on a fresh queue, ready when entered."""

    def __init__(self, kind: str, count: int, work: Path) -> None:
        self.kind, self.count = kind, count
        self.queue = f"bench-{uuid.uuid4().hex[:8]}"
        self.results = work / self.queue
        self.results.mkdir()
        self.logs = [work / f"{self.queue}-{i}.log" for i in range(count)]

    async def __aenter__(self) -> Workers:
        self.procs = [_start(self.kind, self.queue, self.results, log) for log in self.logs]
        await _ready(self.procs, self.logs)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait(30)

    async def wait_for(self, n: int, timeout: float = 120, poll: float = 0.005) -> None:
        """Until ``n`` jobs ran; ``poll`` only delays noticing it, never what is measured
        (throughput's clock stops at most ``poll`` late over seconds; latency reads the
        listener's own timestamps), and keeps the waiting off the 2 cores the workers use."""
        deadline = time.monotonic() + timeout
        while (done := _done(self.results)) < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.kind}: only {done} of {n} jobs ran in {timeout}s")
            await asyncio.sleep(poll)
        if done != n:
            raise RuntimeError(f"{self.kind}: {done} listener runs for {n} events")


# -- throughput --------------------------------------------------------------------------------


async def throughput_round(kind: str, workers: int, n: int, work: Path) -> float:
    """Jobs per second for ``n`` events, first publish to last listener run."""
    ticks = [Tick(n=i) for i in range(n)]
    pool = Workers(kind, workers, work)
    async with Producer(kind, pool.queue) as producer, pool:
        send = producer.send
        it = iter(ticks)

        async def pump() -> None:
            for tick in it:
                await send(tick)

        started = time.perf_counter()
        await asyncio.gather(*(pump() for _ in range(PUBLISHERS)))
        await pool.wait_for(n)
        return n / (time.perf_counter() - started)


def _rotation(r: int) -> tuple[str, ...]:
    return KINDS[r % 3 :] + KINDS[: r % 3]


async def throughput(n: int, rounds: int, worker_counts: list[int]) -> list[dict[str, Any]]:
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for workers in worker_counts:
            rates: dict[str, list[float]] = {k: [] for k in KINDS}
            for r in range(rounds):
                for kind in _rotation(r):
                    rate = await throughput_round(kind, workers, n, Path(tmp))
                    rates[kind].append(rate)
                    _log(f"{workers} worker(s) {kind:10} round {r + 1}: {rate:,.0f} jobs/s")
            out.append(
                {
                    "workers": workers,
                    "events": n,
                    "rounds": rounds,
                    "median": {k: statistics.median(v) for k, v in rates.items()},
                    "all": rates,
                    # per-round ratios, then the median: drift between rounds cancels
                    "x_raw": {k: _ratio(v, rates["raw"]) for k, v in rates.items()},
                    "x_faststream": _ratio(rates["eventbus"], rates["faststream"]),
                }
            )
    return out


def _ratio(a: list[float], b: list[float]) -> float:
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def throughput_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| workers | raw aio-pika | eventbus | FastStream | eventbus / raw | FastStream / raw "
        "| eventbus / FastStream | spread (min-max, jobs/s) |",
        "|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        m, x = row["median"], row["x_raw"]
        spread = "; ".join(f"{k} {min(v):,.0f}-{max(v):,.0f}" for k, v in row["all"].items())
        lines.append(
            f"| {row['workers']} | {m['raw']:,.0f} | {m['eventbus']:,.0f} | "
            f"{m['faststream']:,.0f} | {x['eventbus']:.0%} | {x['faststream']:.0%} | "
            f"{row['x_faststream']:.2f}x | {spread} |"
        )
    return "\n".join(lines)


# -- latency -----------------------------------------------------------------------------------


async def latency_round(kind: str, samples: int, gap: float, work: Path) -> list[float]:
    """Dispatch-to-start (ms) of ``samples`` events sent one at a time, ``gap`` s apart."""
    pool = Workers(kind, 1, work)
    async with Producer(kind, pool.queue) as producer, pool:
        sent: list[int] = []
        for i in range(samples + 5):
            await asyncio.sleep(gap)
            if i >= 5:  # the first few warm caches and connections up
                sent.append(time.monotonic_ns())
            await producer.send(Tick(n=i))
            await pool.wait_for(i + 1, timeout=30, poll=0.001)
        starts = sorted(_starts(pool.results))[5:]
    return [(b - a) / 1e6 for a, b in zip(sent, starts, strict=True)]


async def latency(samples: int, rounds: int, gap: float) -> dict[str, Any]:
    lat: dict[str, list[float]] = {k: [] for k in KINDS}
    p50s: dict[str, list[float]] = {k: [] for k in KINDS}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for kind in _rotation(r):
                got = await latency_round(kind, samples, gap, Path(tmp))
                lat[kind] += got
                p50s[kind].append(statistics.median(got))
                _log(f"latency {kind:10} round {r + 1}: p50 {statistics.median(got):.3f} ms")
    return {
        "samples": samples,
        "rounds": rounds,
        "gap_s": gap,
        "p50_ms": {k: _pct(v, 50) for k, v in lat.items()},
        "p99_ms": {k: _pct(v, 99) for k, v in lat.items()},
        "round_p50_ms": p50s,
    }


def _pct(values: list[float], p: int) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def latency_table(res: dict[str, Any]) -> str:
    lines = [
        "| row | p50 (ms) | p99 (ms) | p50 per round (ms) |",
        "|---|---:|---:|---|",
    ]
    for kind in KINDS:
        rounds = ", ".join(f"{v:.2f}" for v in res["round_p50_ms"][kind])
        lines.append(
            f"| {LABELS[kind]} | {res['p50_ms'][kind]:.2f} | {res['p99_ms'][kind]:.2f} | {rounds} |"
        )
    return "\n".join(lines)


# -- CLI ---------------------------------------------------------------------------------------


def _log(message: str) -> None:
    print(f"[bench rabbitmq {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.rabbitmq",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--throughput", action="store_true", help="jobs/s, 1 and 4 workers")
    parser.add_argument("--latency", action="store_true", help="dispatch-to-start p50/p99")
    parser.add_argument("--callgrind", action="store_true", help="instructions per job")
    parser.add_argument("--all", action="store_true", help="all three (default: the first two)")
    parser.add_argument("--events", type=int, default=5_000, help="events per throughput round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per row (median)")
    parser.add_argument("--workers", default="1,4", help="worker process counts, e.g. 1,4")
    parser.add_argument("--samples", type=int, default=200, help="latency samples per round")
    parser.add_argument("--gap", type=float, default=0.002, help="latency: seconds between")
    parser.add_argument("--jobs", default="100,600", help="callgrind: baseline,measured jobs")
    parser.add_argument("--no-parts", action="store_true", help="callgrind: skip the breakdown")
    parser.add_argument("--parts-only", action="store_true", help="callgrind: only the breakdown")
    parser.add_argument("--json", type=Path, help="write the results as JSON here")
    parser.add_argument("--serve", nargs=2, metavar=("KIND", "QUEUE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(*args.serve)
        return 0
    if args.all:
        args.throughput = args.latency = args.callgrind = True
    elif not (args.throughput or args.latency or args.callgrind):
        args.throughput = args.latency = True  # callgrind needs valgrind: asked for by name
    out: dict[str, Any] = {}
    if args.callgrind:
        from . import _callgrind

        base, measured = (int(j) for j in args.jobs.split(","))
        out["callgrind"] = _callgrind.run(
            base, measured, parts=not args.no_parts, whole=not args.parts_only
        )
        print(_callgrind.table(out["callgrind"]), flush=True)
    if args.throughput:
        counts = [int(c) for c in args.workers.split(",")]
        out["throughput"] = asyncio.run(throughput(args.events, args.rounds, counts))
        print(throughput_table(out["throughput"]), flush=True)
    if args.latency:
        out["latency"] = asyncio.run(latency(args.samples, args.rounds, args.gap))
        print(latency_table(out["latency"]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    # Run the importable module's copy, so every class and listener is benchmarks.rabbitmq's
    # (the name workers import), never __main__'s.
    sys.exit(importlib.import_module("benchmarks.rabbitmq").main())
