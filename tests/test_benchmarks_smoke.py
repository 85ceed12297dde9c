"""The benchmark harness keeps working: every row runs on a few events and is verified.

Nothing here times anything or asserts speed; it checks that rows do their work and that
the harness rejects a row that does less (or more) work than it claims.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import Clock, Row, Tally, WorkMissing, block_of
from benchmarks._runner import time_once
from benchmarks.rows_core import pings

ROOT = Path(__file__).resolve().parents[1]


def test_smoke_mode_runs_and_verifies_every_row(tmp_path: Path) -> None:
    out = tmp_path / "smoke.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    doc = json.loads(out.read_text())
    rows = {row["key"]: row for row in doc["rows"]}
    for key, row in rows.items():
        assert row["error"] is None or row["error"].startswith("not run"), (key, row["error"])
    ours = [r for r in rows.values() if r["kind"] != "peer" and r["backend"] != "uvloop"]
    assert {r["scenario"] for r in ours} >= {"S1", "S2", "S3", "S4", "S5", "S6"}
    assert all(r["error"] is None for r in ours)
    assert doc["memory"] and all(m["error"] is None for m in doc["memory"])
    assert "| eventbus dispatch_now | asyncio |" in done.stdout


def _row(body) -> Row:  # type: ignore[no-untyped-def]
    return Row("S1", "test row", "raw", "asyncio", body)


def test_a_row_that_skips_events_fails() -> None:
    async def lazy(n: int, clock: Clock) -> list[Tally]:
        k, reps = block_of(n)
        events = pings(k)
        tally = Tally(events, reps)
        with clock:
            for event in events[1:]:  # one event never reaches the listener
                tally.hit(event)
        return [tally]

    with pytest.raises(WorkMissing, match="ran 15 times for 16 events"):
        time_once(_row(lazy), 16)


def test_a_row_that_runs_a_listener_twice_for_one_event_fails() -> None:
    async def doubled(n: int, clock: Clock) -> list[Tally]:
        events = pings(n)
        tally = Tally(events)
        with clock:
            for event in [events[0], *events[:-1]]:  # right count, wrong events
                tally.hit(event)
        return [tally]

    with pytest.raises(WorkMissing, match="exactly once per event"):
        time_once(_row(doubled), 8)


def test_a_row_must_clock_its_work() -> None:
    async def unclocked(n: int, clock: Clock) -> list[Tally]:
        events = pings(n)
        tally = Tally(events)
        for event in events:
            tally.hit(event)
        return [tally]

    with pytest.raises(RuntimeError, match="clock exactly once"):
        time_once(_row(unclocked), 4)
