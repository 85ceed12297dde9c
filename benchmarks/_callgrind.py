"""Instructions per RabbitMQ job, under ``valgrind --tool=callgrind``: stable under load.

Wall-clock numbers on a shared 2-core machine move by 10-30% between runs; instruction
counts of the same work move by well under 1%. Each measurement is a pair of processes run
under callgrind that differ only in how many jobs they handle (``--jobs 100,600``): start-up,
imports, connecting, declaring and warming up cancel out, and ``(Ir(600) - Ir(100)) / 500``
is the client-side cost of one job, the library and the event loop included (the broker runs
outside valgrind and is not counted).

- **whole publish**: one process connects and publishes N events one at a time, each
  awaited until the broker confirmed it (persistent, mandatory), then closes;
- **whole consume**: one process consumes exactly the N messages the publish run left in the
  queue (prefetch 50), runs the listener, acks each after it, then stops;
- **parts**: one process runs each piece of eventbus's per-job path 500 times in a loop
  (after one warm-up call of every part), each loop after an ``os.getppid()`` where
  callgrind dumps its counters (``--dump-before=os_getppid``), minus the empty loop: the ids,
  the event's JSON and its round-trip check, the envelope, ``aio_pika.Message``, decoding
  the head and the event; and the raw loop's own encode, ``Message`` and decode.

Run through ``python -m benchmarks.rabbitmq --callgrind``; this module is also the child
(``python -m benchmarks._callgrind whole|part ...``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: FastStream is left out here: its import and shutdown alone take minutes under callgrind
#: on this machine; its rows are in --throughput and --latency.
KINDS = ("raw", "eventbus")
PART_LOOPS = 500
LISTENER = "benchmarks.rabbitmq.on_tick"

# -- parts: name -> (what it is, side, factory of the loop body) ---------------------------------


def _parts() -> dict[str, tuple[str, Callable[[], Callable[[], object]]]]:
    """Each factory does its set-up and returns the body that is looped."""
    import time
    from contextvars import copy_context

    import aio_pika

    from benchmarks.rabbitmq import Tick
    from eventbus import context as _context
    from eventbus.drivers import _wire

    tick = Tick(n=12345)
    data = tick.model_dump_json().encode()
    event_uuid = uuid.uuid4()
    job = _wire.job_id(event_uuid, LISTENER)

    def _encode() -> bytes:
        return _wire.encode(
            job=job,
            event_id=event_uuid.hex,
            event_name=tick.event_name,
            listener=LISTENER,
            attempt=1,
            dispatched_at=time.time(),
            context={},
            data=data,
        )

    body = _encode()
    persistent = aio_pika.DeliveryMode.PERSISTENT

    def ids() -> Callable[[], object]:
        def body_() -> object:
            u = uuid.uuid4()
            return u.hex, _wire.job_id(u, LISTENER)

        return body_

    def dump() -> Callable[[], object]:
        return lambda: tick.model_dump_json().encode()

    def event_json() -> Callable[[], object]:
        return lambda: _wire.event_json(tick)

    def snapshot() -> Callable[[], object]:
        ctx = copy_context()
        return lambda: ctx.run(_context.snapshot)

    def message() -> Callable[[], object]:
        return lambda: aio_pika.Message(
            body,
            delivery_mode=persistent,
            content_type=_wire.CONTENT_TYPE,
            message_id=job,
            headers=None,
        )

    def raw_message() -> Callable[[], object]:
        return lambda: aio_pika.Message(data, delivery_mode=persistent)

    def decode_head() -> Callable[[], object]:
        return lambda: _wire.decode_head(body)

    def decode_event() -> Callable[[], object]:
        return lambda: _wire.decode_event(Tick, body)

    def raw_decode() -> Callable[[], object]:
        return lambda: Tick.model_validate_json(data)

    def job_context() -> Callable[[], object]:
        from eventbus import EventBus
        from eventbus.drivers._runner import Runner

        envelope, _ = _wire.decode_head(body)
        runner = Runner(EventBus(driver="sync"), max_message_size=1 << 20)
        return lambda: runner._job_context(envelope, False)

    def decode() -> Callable[[], object]:
        from benchmarks.rabbitmq import events
        from eventbus import EventBus
        from eventbus.drivers._runner import Names, decode

        names = Names(EventBus(events, driver="sync"))
        names.load()
        return lambda: decode(names, body)

    return {
        "none": ("nothing (the baseline process)", lambda: lambda: None),
        "ids": ("eventbus: uuid4 event id + uuid5 job id (`_wire.job_id`), hex", ids),
        "dump": ("both: `model_dump_json().encode()`", dump),
        "event_json": ("eventbus: `_wire.event_json` (dump + validate back + compare)", event_json),
        "snapshot": ("eventbus: `context.run(snapshot)`", snapshot),
        "encode": ("eventbus: `_wire.encode` (json.dumps head + splice)", _encode_factory(_encode)),
        "message": (
            "eventbus: `aio_pika.Message(body, PERSISTENT, content_type, message_id)`",
            message,
        ),
        "raw_message": ("raw: `aio_pika.Message(body, PERSISTENT)`", raw_message),
        "decode_head": (
            "eventbus: `_wire.decode_head` (json.loads + checks + Envelope)",
            decode_head,
        ),
        "decode_event": ("eventbus: `_wire.decode_event` (validate the body again)", decode_event),
        "decode": (
            "eventbus: `_runner.decode` (one parse: head and event, names resolved)",
            decode,
        ),
        "raw_decode": ("raw: `Tick.model_validate_json(body)`", raw_decode),
        "job_context": (
            "eventbus: `copy_context` + context install + `Job` + `current_job` set",
            job_context,
        ),
    }


def _encode_factory(encode: Callable[[], bytes]) -> Callable[[], Callable[[], object]]:
    return lambda: encode


def part_child(loops: int) -> None:
    """Every part ``loops`` times, each after a call of ``os.getppid``: callgrind dumps its
    counters there (``--dump-before=os_getppid``), so each part is one dump of one process."""
    parts = _parts()
    bodies = {key: factory() for key, (_, factory) in parts.items()}
    for warm in bodies.values():  # warm every part first: lazy set-up is not per-job cost
        warm()
    for body in bodies.values():
        os.getppid()
        for _ in range(loops):
            body()
    os.getppid()  # what follows (shutdown) is the last dump, not a part's


# -- whole publish / consume ---------------------------------------------------------------


async def whole_child(role: str, kind: str, queue: str, n: int) -> None:
    from benchmarks import rabbitmq as rmq

    if role == "publish":
        ticks = [rmq.Tick(n=i) for i in range(n)]
        async with rmq.Producer(kind, queue, keep=True) as producer:
            send = producer.send
            for tick in ticks:
                await send(tick)
        return
    stop = asyncio.Event()
    rmq.goal[:] = [n, stop]
    if kind == "eventbus":
        from eventbus import EventBus
        from eventbus.drivers.rabbitmq import RabbitMQDriver
        from eventbus.drivers.rabbitmq.worker import Worker

        bus = EventBus(rmq.events, driver=RabbitMQDriver(rmq.URL, queue=queue, connect_timeout=120))
        await Worker(bus, concurrency=rmq.PREFETCH, stats_interval=3600).run(stop)
    else:
        await rmq.raw_consume(queue, stop)


# -- the parent ------------------------------------------------------------------------------


def _callgrind(args: list[str], work: Path, env: dict[str, str]) -> int:
    """Total instructions (Ir) of ``python -m benchmarks._callgrind ARGS`` under callgrind."""
    out = work / f"cg-{uuid.uuid4().hex[:8]}.out"
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable]
    proc = subprocess.run(
        [*cmd, "-m", "benchmarks._callgrind", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"callgrind {args} failed:\n{proc.stderr[-3000:]}")
    match = re.search(r"^summary:\s+(\d+)", out.read_text(), re.M)
    if match is None:
        raise RuntimeError(f"no summary in {out}")
    out.unlink()
    return int(match.group(1))


def _whole_chain(kind: str, n: int, work: Path) -> tuple[int, int]:
    """Ir of publishing ``n`` jobs, then of consuming them, on a fresh queue."""
    queue = f"bench-cg-{uuid.uuid4().hex[:8]}"
    results = work / queue
    results.mkdir()
    env = dict(os.environ, EVENTBUS_BENCH_RESULTS=str(results), PYTHONHASHSEED="0")
    publish = _callgrind(["whole", "publish", kind, queue, str(n)], work, env)
    consume = _callgrind(["whole", "consume", kind, queue, str(n)], work, env)
    done = sum(p.stat().st_size for p in results.glob("*.bin")) // 8
    if done != n:
        raise RuntimeError(f"{kind}: {done} listener runs for {n} jobs")
    asyncio.run(_drop(queue))
    return publish, consume


async def _drop(queue: str) -> None:
    import aio_pika

    from benchmarks.rabbitmq import URL

    connection = await aio_pika.connect(URL)
    async with connection:
        for name in (queue, f"{queue}.dead"):
            channel = await connection.channel()
            await channel.queue_delete(name)
            await channel.close()


def _log(message: str) -> None:
    from benchmarks.rabbitmq import _log as log

    log(message)


def _parts_ir(work: Path, loops: int = PART_LOOPS) -> dict[str, Any]:
    """Instructions per call of each part, from one process's dumps, minus the empty body."""
    out = work / "parts.out"
    proc = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--dump-before=os_getppid",
            f"--callgrind-out-file={out}",
            sys.executable,
            "-m",
            "benchmarks._callgrind",
            "parts",
            str(loops),
        ],
        cwd=ROOT,
        env=dict(os.environ, PYTHONHASHSEED="0"),
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"callgrind parts failed:\n{proc.stderr[-3000:]}")
    described = {k: v[0] for k, v in _parts().items()}
    # dump 1 is start-up; dumps 2.. are the parts in order; the final file is shutdown
    irs = {}
    for i, name in enumerate(described, start=2):
        text = Path(f"{out}.{i}").read_text()
        match = re.search(r"^summary:\s+(\d+)", text, re.M)
        if match is None:
            raise RuntimeError(f"no summary in {out}.{i}")
        irs[name] = int(match.group(1))
    empty = irs.pop("none")
    parts = {k: {"what": described[k], "ir": (v - empty) / loops} for k, v in irs.items()}
    parts["roundtrip"] = {
        "what": "eventbus: the round-trip check alone (event_json - dump)",
        "ir": parts["event_json"]["ir"] - parts["dump"]["ir"],
    }
    return parts


def run(
    base: int, measured: int, *, parts: bool = True, whole: bool = True, jobs: int = 2
) -> dict[str, Any]:
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    work = Path(tempfile.mkdtemp(prefix="eventbus-cg-"))
    out: dict[str, Any] = {"jobs": [base, measured], "whole": {}, "parts": {}}
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        chains = {
            (kind, n): pool.submit(_whole_chain, kind, n, work)
            for kind in KINDS
            for n in (base, measured)
            if whole
        }
        part_run = pool.submit(_parts_ir, work) if parts else None
        for kind in KINDS if whole else ():
            (p0, c0), (p1, c1) = chains[kind, base].result(), chains[kind, measured].result()
            out["whole"][kind] = {
                "publish": (p1 - p0) / (measured - base),
                "consume": (c1 - c0) / (measured - base),
            }
            _log(f"callgrind {kind}: {out['whole'][kind]}")
        if part_run is not None:
            out["parts"] = part_run.result()
    shutil.rmtree(work, ignore_errors=True)
    return out


def table(res: dict[str, Any]) -> str:
    whole = res["whole"]
    lines = []
    if whole:
        raw = whole["raw"]
        lines += [
            f"Instructions per job (callgrind, ({res['jobs'][1]} - {res['jobs'][0]} jobs) / "
            f"{res['jobs'][1] - res['jobs'][0]}):",
            "",
            "| row | whole publish | x raw | whole consume | x raw |",
            "|---|---:|---:|---:|---:|",
        ]
        for kind in KINDS:
            w = whole[kind]
            lines.append(
                f"| {kind} | {w['publish'] / 1e3:,.0f} k | {w['publish'] / raw['publish']:.2f}x "
                f"| {w['consume'] / 1e3:,.0f} k | {w['consume'] / raw['consume']:.2f}x |"
            )
    if res["parts"]:
        lines += ["", "| part | instructions per call |", "|---|---:|"]
        for _, part in res["parts"].items():
            lines.append(f"| {part['what']} | {part['ir'] / 1e3:,.1f} k |")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    if argv[0] == "parts":
        part_child(int(argv[1]))
    elif argv[0] == "whole":
        asyncio.run(whole_child(argv[1], argv[2], argv[3], int(argv[4])))
    else:
        raise SystemExit(f"unknown child {argv[0]!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
