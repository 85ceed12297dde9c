"""What a benchmark row is, how its work is verified, and where rows are registered.

A row is an ``async`` body ``body(n, clock) -> list[Tally]`` that runs on a fresh event
loop per repetition: it sets up (bus, listeners, events) outside the clock, does ``n``
events of work inside ``with clock:``, and returns the tallies its listeners kept. The
harness then checks every tally: each listener ran exactly once per dispatched event, or the
row fails (a benchmark that does less work must fail, not win).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

__all__ = [
    "BACKENDS",
    "Body",
    "Clock",
    "MemoryCase",
    "Row",
    "Tally",
    "WorkMissing",
    "baseline_scenario",
    "block_of",
    "memory_case",
    "memory_cases",
    "register",
    "rows",
    "run_on",
    "scenario",
    "scenarios",
]

BACKENDS = ("asyncio", "uvloop", "trio")

#: Events are reused in blocks of this many distinct objects: a 0.25 s row may need millions
#: of dispatches, and millions of pre-built pydantic events would measure the allocator.
BLOCK = 1024


class WorkMissing(AssertionError):
    """A row's listeners did not run exactly once per event."""


class Tally:
    """What one listener saw: ``tally.hit(event)`` appends it (about 10 ns).

    Every row's listeners do this same trivial work, so the comparison stays fair. After the
    run each of the distinct ``events`` must have been hit exactly ``reps`` times, by
    identity (or by ``key(obj) == event`` for rows whose "listener" makes new objects).
    """

    __slots__ = ("events", "hit", "hits", "key", "reps")

    def __init__(
        self, events: Sequence[Any], reps: int = 1, key: Callable[[Any], Any] | None = None
    ) -> None:
        self.events = list(events)
        self.reps = reps
        self.key = key
        self.hits: list[Any] = []
        self.hit = self.hits.append

    @property
    def n(self) -> int:
        return len(self.events) * self.reps

    def verify(self, what: str) -> None:
        hits = self.hits if self.key is None else [self.key(obj) for obj in self.hits]
        events, k, reps = self.events, len(self.events), self.reps
        if len(hits) != k * reps:
            raise WorkMissing(f"{what}: a listener ran {len(hits)} times for {k * reps} events")
        if all(hits[r * k : (r + 1) * k] == events for r in range(reps)):
            return  # in order: the common case, checked at C speed
        if self.key is None:
            counts = Counter(map(id, hits))
            expected = {id(e): e for e in events}
        else:
            counts = Counter(hits)
            expected = {e: e for e in events}
        wrong = [(expected.get(i, i), c) for i, c in counts.items() if c != reps][:3]
        missing = [e for i, e in expected.items() if i not in counts][:3]
        if wrong or missing or len(counts) != len(expected):
            raise WorkMissing(
                f"{what}: a listener did not run exactly once per event "
                f"(expected {reps} runs per distinct event; wrong: {wrong}, missing: {missing})"
            )


def block_of(n: int) -> tuple[int, int]:
    """``(k, reps)`` with ``k * reps == n``: distinct events per block, and blocks."""
    if n <= BLOCK:
        return n, 1
    if n % BLOCK:
        raise ValueError(f"n={n} must be a multiple of {BLOCK} (the harness rounds it)")
    return BLOCK, n // BLOCK


class Clock:
    """``with clock:`` around exactly the measured work; set-up and checks stay outside."""

    __slots__ = ("_t0", "elapsed_ns", "uses")

    def __init__(self) -> None:
        self.elapsed_ns: int | None = None
        self.uses = 0
        self._t0 = 0

    def __enter__(self) -> Clock:
        self.uses += 1
        self._t0 = time.perf_counter_ns()
        return self

    def __exit__(self, *exc: object) -> None:
        self.elapsed_ns = time.perf_counter_ns() - self._t0


Body = Callable[[int, Clock], Awaitable[Sequence[Tally]]]


@dataclass(frozen=True)
class Row:
    """One line of the table: a scenario, done one way, on one backend.

    ``kind`` is ``"eventbus"``, ``"raw"`` (the runtime's limit) or ``"peer"``. The row with
    ``baseline=True`` is what every row of its scenario is divided by (same backend when it
    has one, else asyncio). ``versus`` names another row's key for an extra ratio (S6 vs S1).
    ``unavailable`` returns a reason to skip the row (a peer not installed), or None.
    """

    scenario: str
    name: str
    kind: str
    backend: str
    body: Body
    baseline: bool = False
    versus: str | None = None
    note: str = ""
    unavailable: Callable[[], str | None] = field(default=lambda: None)
    #: the smallest n worth timing (slow peers need few events for 0.25 s)
    start_n: int = BLOCK

    @property
    def key(self) -> str:
        return f"{self.scenario}/{self.name}/{self.backend}"


@dataclass(frozen=True)
class MemoryCase:
    """A memory row: ``run(events)`` pushes events through, in a subprocess of its own."""

    scenario: str
    name: str
    backend: str
    run: Callable[[int], Awaitable[Sequence[Tally]]]
    note: str = ""

    @property
    def key(self) -> str:
        return f"{self.scenario}/{self.name}/{self.backend}"


_SCENARIOS: dict[str, str] = {}
_BASELINE_FROM: dict[str, str] = {}
_ROWS: dict[str, Row] = {}
_MEMORY: dict[str, MemoryCase] = {}


def scenario(sid: str, title: str, *, baseline_from: str | None = None) -> None:
    """Declare a scenario (``"S8"``, ``"end-to-end through RabbitMQ"``); order is kept.

    ``baseline_from`` borrows another scenario's raw baseline instead of timing it twice.
    """
    _SCENARIOS.setdefault(sid, title)
    if baseline_from is not None:
        _BASELINE_FROM[sid] = baseline_from


def scenarios() -> dict[str, str]:
    return dict(_SCENARIOS)


def baseline_scenario(sid: str) -> str:
    return _BASELINE_FROM.get(sid, sid)


def register(row: Row) -> Row:
    if row.scenario not in _SCENARIOS:
        raise ValueError(f"row {row.key}: declare scenario {row.scenario!r} first")
    if row.backend not in BACKENDS:
        raise ValueError(f"row {row.key}: backend must be one of {BACKENDS}")
    if row.key in _ROWS:
        raise ValueError(f"row {row.key} is registered twice")
    _ROWS[row.key] = row
    return row


def rows() -> list[Row]:
    return list(_ROWS.values())


def memory_case(case: MemoryCase) -> MemoryCase:
    _MEMORY[case.key] = case
    return case


def memory_cases() -> list[MemoryCase]:
    return list(_MEMORY.values())


def run_on(backend: str, main: Callable[[], Awaitable[Any]]) -> Any:
    """Run ``main`` on a fresh event loop of ``backend``."""
    if backend == "trio":
        return anyio.run(main, backend="trio")
    if backend == "uvloop":
        import uvloop

        return anyio.run(
            main, backend="asyncio", backend_options={"loop_factory": uvloop.new_event_loop}
        )
    return anyio.run(main, backend="asyncio")


def uvloop_missing() -> str | None:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "uvloop is not installed (pip install -e '.[bench]')"
    return None
