"""``eventbus demo``: the chat app of the README, run through the real async farm.

Simulated clients create chats and send messages; every request puts its user and locale in
``eventbus.context`` and dispatches an event. Listeners (one of them flaky, retried) run on
the farm; the summary shows what ran, the retries, the throughput, and checks that every
listener saw the user and locale of the request that dispatched its event (exit 1 if not).
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import math
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

import anyio

if TYPE_CHECKING:
    from eventbus import Stats

__all__ = ["register"]

DEFAULT_EVENTS = 5000
PROVIDER = "eventbus.demo.provider"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the in-memory chat app through the async farm (the main job)",
        description=(
            "Run a self-contained chat app: clients create chats and send messages, each "
            "request with its user and locale in eventbus.context; listeners run on the async "
            "farm with retries. Prints live progress, then a summary. Exit 1 if any listener "
            "saw the wrong user or locale, or any work was lost."
        ),
    )
    parser.add_argument(
        "--events",
        type=int,
        default=DEFAULT_EVENTS,
        metavar="N",
        help=f"events to dispatch (default {DEFAULT_EVENTS}); raise it for a load figure",
    )
    parser.add_argument(
        "--clients", type=int, default=50, metavar="N", help="concurrent clients (default 50)"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=100,
        metavar="N",
        help="farm workers, the bus's max_concurrency (default 100)",
    )
    parser.add_argument(
        "--latency",
        type=float,
        default=10.0,
        metavar="MS",
        help="simulated I/O per listener run, in ms (default 10; 0 measures the bus itself)",
    )
    parser.add_argument(
        "--backend",
        choices=("asyncio", "trio"),
        default="asyncio",
        help="event loop to run on (trio needs `pip install trio`)",
    )
    parser.set_defaults(handler=_run)


@dataclass
class _Outcome:
    elapsed: float
    stats: dict[str, int]


def _run(args: argparse.Namespace) -> int:
    for name in ("events", "clients", "concurrency"):
        if getattr(args, name) < 1:
            return _usage(f"--{name} must be at least 1, got {getattr(args, name)}")
    if not math.isfinite(args.latency) or args.latency < 0:  # nan < 0 is false
        return _usage(f"--latency must be >= 0 ms and finite, got {args.latency}")
    if args.backend == "trio" and importlib.util.find_spec("trio") is None:
        return _usage("--backend trio needs trio installed: pip install trio")
    logger = logging.getLogger("eventbus")
    level = logger.level
    if not args.verbose:  # retries are expected here; the summary reports them
        logger.setLevel(logging.ERROR)
    try:
        outcome = anyio.run(_demo, args, backend=args.backend)
    finally:
        logger.setLevel(level)
    return _summary(args, outcome)


async def _demo(args: argparse.Namespace) -> _Outcome:
    from eventbus import EventBus, load_provider
    from eventbus.demo import app

    bus = EventBus(driver="async_farm", max_concurrency=args.concurrency, name="demo")
    load_provider(PROVIDER, bus)
    out = sys.stdout
    print(
        f"eventbus demo: in-memory chat app, {args.events} events from {args.clients} "
        f"clients ({len(app.USERS)} users), async farm of {args.concurrency} workers "
        f"on {args.backend}",
        file=out,
    )
    progress = _Progress(out, args.events, 2 * args.events)
    async with bus, anyio.create_task_group() as tg:
        tg.start_soon(progress.run, bus.stats)
        started = time.perf_counter()
        await app.run_requests(bus, args.events, args.clients, args.latency / 1000)
        await bus.join()
        elapsed = time.perf_counter() - started
        tg.cancel_scope.cancel()
    progress.finish(bus.stats)
    return _Outcome(elapsed, bus.stats.as_dict())


class _Progress:
    """A live ``\\r`` counter on a terminal; a plain line per quarter otherwise."""

    def __init__(self, out: TextIO, events: int, jobs: int) -> None:
        self.out = out
        self.events = events
        self.jobs = jobs
        self.tty = out.isatty()
        self.quarter = 0
        self.width = 0

    def line(self, stats: Stats) -> str:
        return (
            f"  events {stats.dispatched}/{self.events}"
            f" | listener runs {stats.succeeded + stats.failed}/{self.jobs}"
            f" | running {stats.running}"
            f" | retried {stats.retried}"
        )

    async def run(self, stats: Stats) -> None:
        while True:
            if self.tty:
                self._overwrite(self.line(stats))
            else:
                done = stats.succeeded + stats.failed
                quarter = 4 * done // max(self.jobs, 1)
                if quarter > self.quarter and quarter < 4:
                    self.quarter = quarter
                    print(self.line(stats), file=self.out, flush=True)
            await anyio.sleep(0.1)

    def _overwrite(self, text: str) -> None:
        self.out.write("\r" + text.ljust(self.width))
        self.out.flush()
        self.width = len(text)

    def finish(self, stats: Stats) -> None:
        if self.tty:
            self._overwrite(self.line(stats))
            self.out.write("\n")
        else:
            print(self.line(stats), file=self.out)
        self.out.flush()


def _summary(args: argparse.Namespace, outcome: _Outcome) -> int:
    from eventbus.demo import app
    from eventbus.demo.events import NewChatEvent, NewUserMessage
    from eventbus.demo.listeners import GenerateChatTitle

    state = app.state
    stats = outcome.stats
    kinds = Counter(name for name, _, _ in state.audit)
    chats = len(state.chats)
    messages = sum(len(m) for m in state.messages.values())
    runs = stats["succeeded"] + stats["failed"]
    seconds = max(outcome.elapsed, 1e-9)
    new_chat, new_message = NewChatEvent.event_name, NewUserMessage.event_name
    print()
    print(
        f"events dispatched  {stats['dispatched']}  ({kinds[new_chat]} {new_chat}, "
        f"{kinds[new_message]} {new_message}) from {state.requests} requests"
    )
    print(
        f"listener runs      {stats['succeeded']} succeeded, {stats['failed']} failed, "
        f"{stats['dropped']} dropped  (GenerateChatTitle {len(state.titles)}, "
        f"NewMessageListener {messages}, AuditTrail {len(state.audit)})"
    )
    example = f"; e.g. {state.retried_example}" if state.retried_example else ""
    print(
        f"failures retried   {stats['retried']}  (title service busy, "
        f"GenerateChatTitle tries={GenerateChatTitle.tries}{example})"
    )
    print(
        f"throughput         {stats['dispatched'] / seconds:,.0f} events/s, "
        f"{runs / seconds:,.0f} listener runs/s  ({stats['dispatched']} events in "
        f"{outcome.elapsed:.2f} s, {args.latency:g} ms simulated I/O per run)"
    )
    problems: list[str] = []
    if state.wrong:
        problems.append(f"{len(state.wrong)} listener run(s) saw the wrong user or locale")
    if stats["failed"] or stats["dropped"]:
        problems.append(f"{stats['failed']} job(s) failed, {stats['dropped']} dropped")
    if (
        len(state.titles) != chats
        or messages != kinds[new_message]
        or len(state.audit) != stats["dispatched"]
    ):
        problems.append(
            f"work lost: {chats} chats got {len(state.titles)} titles, {kinds[new_message]} "
            f"messages were stored {messages} times, {stats['dispatched']} events audited "
            f"{len(state.audit)} times"
        )
    if not state.wrong:
        print(
            f"context            {state.checks} listener runs checked: each saw the user and "
            "locale of the request that dispatched its event"
        )
    else:
        print(f"context            {len(state.wrong)} of {state.checks} listener runs were WRONG:")
    for seen in state.wrong[:5] or state.samples:
        mark = "ok" if seen.ok else f"WRONG (expected {seen.expected_user})"
        print(
            f"  {seen.listener:<19} {seen.event_name:<17} chat {seen.chat_id}  "
            f"user={seen.user} locale={seen.locale}  {mark}"
        )
    if problems:
        for problem in problems:
            print(f"eventbus demo: FAILED: {problem}", file=sys.stderr)
        return 1
    return 0


def _usage(message: str) -> int:
    print(f"eventbus demo: error: {message}", file=sys.stderr)
    return 2
