"""``eventbus work``: run queued jobs from RabbitMQ with the app's own provider.

Start as many as you need, on as many machines: each consumes the same queue. SIGTERM or
SIGINT stops consuming, lets running jobs finish within ``--grace`` seconds and returns the
rest to the queue (a second signal skips the wait); the exit code is then 0.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from .._checks import parse_seconds
from ._common import add_broker_options, add_provider_option

__all__ = ["register"]

logger = logging.getLogger("eventbus")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "work",
        help="run queued jobs from RabbitMQ",
        description=(
            "Consume the bus's RabbitMQ queue and run each job with the listeners registered "
            "by the provider. Run from the project root: the current directory is importable. "
            "A `lifespan` in the provider module (an @asynccontextmanager function) opens the "
            "app's resources before the first job and closes them after the last."
        ),
    )
    add_provider_option(parser)
    parser.add_argument(
        "--concurrency",
        type=_positive_int,
        default=10,
        metavar="N",
        help="jobs run at once, and the prefetch count (default 10)",
    )
    add_broker_options(parser)
    parser.add_argument(
        "--grace",
        type=parse_seconds(),
        default=30.0,
        metavar="SECONDS",
        help="on SIGTERM/SIGINT, how long running jobs may finish (default 30)",
    )
    parser.add_argument(
        "--crash-limit",
        type=_positive_int,
        default=2,
        metavar="N",
        help="a redelivered job runs alone; dead-letter it (after failed()) once a worker "
        "process died N times while running it alone (default 2)",
    )
    parser.add_argument(
        "--stats-interval",
        type=parse_seconds(zero_ok=False),
        default=10.0,
        metavar="SECONDS",
        help="seconds between throughput log lines (default 10)",
    )
    parser.add_argument(
        "--loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="event loop implementation (uvloop must be installed)",
    )
    parser.add_argument(
        "--verbose", dest="job_lines", action="store_true", help="log one line per job"
    )
    parser.set_defaults(handler=_run)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _run(args: argparse.Namespace) -> int:
    from eventbus import EventBus, RegistrationError, load_provider, set_bus
    from eventbus._provider import provider_module
    from eventbus.drivers.rabbitmq import RabbitMQDriver
    from eventbus.drivers.rabbitmq.worker import Worker

    provider = provider_module(args.provider)
    bus = EventBus(driver=RabbitMQDriver(args.url, queue=args.queue), name=f"worker-{os.getpid()}")
    set_bus(bus)  # listeners that dispatch publish through this worker's connection
    try:
        load_provider(provider, bus)
    except RegistrationError as exc:
        print(f"eventbus work: {exc}", file=sys.stderr)
        return 1
    worker = Worker(
        bus,
        concurrency=args.concurrency,
        grace=args.grace,
        verbose=args.job_lines,
        stats_interval=args.stats_interval,
        crash_limit=args.crash_limit,
    )
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if args.loop == "uvloop":
        # uvloop is optional (the bench extra), so it is looked up at run time, not imported
        # at type-check time where it may not be installed.
        try:
            uvloop = importlib.import_module("uvloop")
        except ModuleNotFoundError:
            print(
                "eventbus work: --loop uvloop needs uvloop installed (pip install uvloop), "
                "or use --loop asyncio",
                file=sys.stderr,
            )
            return 1
        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(_main(worker))


async def _main(worker: Any) -> int:
    from eventbus.drivers.rabbitmq import BrokerError

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    hurry = asyncio.Event()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            logger.warning("second %s: not waiting for running jobs", signal.Signals(signum).name)
            hurry.set()
            return
        logger.info("%s received: finishing running jobs", signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        await worker.run(stop, hurry)
    except BrokerError as exc:
        print(f"eventbus work: {exc}", file=sys.stderr)
        return 1
    return 0
