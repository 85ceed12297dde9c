"""Calibrate, run rows interleaved round by round, and reduce to medians and ratios."""

from __future__ import annotations

import gc
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._registry import (
    BLOCK,
    Clock,
    MemoryCase,
    Row,
    WorkMissing,
    baseline_scenario,
    run_on,
)

Log = Callable[[str], None]


@dataclass
class Result:
    row: Row
    n: int = 0
    ns: list[float] = field(default_factory=list)  # ns per event, one per round
    error: str | None = None
    failed_check: bool = False
    ratio_raw: float | None = None
    ratio_peer: float | None = None
    ratio_versus: float | None = None
    baseline_key: str | None = None
    best_peer_key: str | None = None

    @property
    def median_ns(self) -> float:
        return statistics.median(self.ns)

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.ns)


def time_once(row: Row, n: int) -> int:
    """One repetition on a fresh event loop; returns the clocked ns, after verifying."""
    clock = Clock()
    gc.collect()

    async def main() -> Any:
        return await row.body(n, clock)

    tallies = run_on(row.backend, main)
    if clock.uses != 1 or clock.elapsed_ns is None:
        raise RuntimeError(f"{row.key}: the body must enter its clock exactly once")
    if not tallies:
        raise WorkMissing(f"{row.key}: the body returned no tallies to verify")
    for tally in tallies:
        if tally.n != n:
            raise WorkMissing(f"{row.key}: a tally covers {tally.n} of {n} events")
        tally.verify(row.key)
    return clock.elapsed_ns


def round_n(n: float) -> int:
    if n <= BLOCK:
        return max(1, int(n))
    return max(1, round(n / BLOCK)) * BLOCK


def calibrate(row: Row, target_s: float) -> int:
    """Find n such that one repetition takes about ``target_s``."""
    n = row.start_n
    for _ in range(8):
        elapsed = time_once(row, n) / 1e9
        scale = target_s / max(elapsed, 1e-6)
        if 0.5 <= scale <= 2 or (elapsed > target_s and n == 1):
            return round_n(n * scale)
        n = round_n(n * min(scale, 50.0))
    return n


def run_rounds(rows: Sequence[Row], rounds: int, target_s: float, log: Log) -> list[Result]:
    results = [Result(row) for row in rows]
    for result in results:
        row = result.row
        reason = row.unavailable()
        if reason is not None:
            result.error = f"not run: {reason}"
            log(f"skip {row.key}: {reason}")
            continue
        try:
            result.n = calibrate(row, target_s)
        except Exception as exc:
            _fail(result, exc, log)
            continue
        log(f"calibrated {row.key}: n={result.n}")
    for index in range(rounds):
        started = time.perf_counter()
        for result in results:
            if result.error is not None:
                continue
            try:
                result.ns.append(time_once(result.row, result.n) / result.n)
            except Exception as exc:
                _fail(result, exc, log)
        log(f"round {index + 1}/{rounds} done in {time.perf_counter() - started:.1f}s")
    _ratios(results)
    return results


def _fail(result: Result, exc: BaseException, log: Log) -> None:
    result.failed_check = isinstance(exc, WorkMissing)
    result.error = f"{'FAILED CHECK' if result.failed_check else 'error'}: {exc!r}"[:300]
    result.ns = []
    log(f"{result.row.key}: {result.error}")


def _per_round_median(a: Result, b: Result) -> float:
    return statistics.median(x / y for x, y in zip(a.ns, b.ns, strict=True))


def _ratios(results: list[Result]) -> None:
    ok = {r.row.key: r for r in results if r.ok}
    for result in ok.values():
        row = result.row
        base_sid = baseline_scenario(row.scenario)
        bases = {
            r.row.backend: r for r in ok.values() if r.row.scenario == base_sid and r.row.baseline
        }
        base = bases.get(row.backend) or bases.get("asyncio")
        if base is not None:
            result.ratio_raw = _per_round_median(result, base)
            result.baseline_key = base.row.key
        peers = [r for r in ok.values() if r.row.scenario == row.scenario and r.row.kind == "peer"]
        if peers:
            best = min(peers, key=lambda r: r.median_ns)
            result.ratio_peer = _per_round_median(result, best)
            result.best_peer_key = best.row.key
        if row.versus is not None and row.versus in ok:
            result.ratio_versus = _per_round_median(result, ok[row.versus])


# --- S7: memory, one subprocess per measurement -----------------------------------------------


@dataclass
class MemoryResult:
    case: MemoryCase
    events: int
    over_idle_mb: float | None = None
    seconds: float | None = None
    error: str | None = None


def measure_memory(case: MemoryCase, events: int, log: Log) -> MemoryResult:
    result = MemoryResult(case, events)
    cmd = [sys.executable, "-m", "benchmarks._memory", case.key, str(events)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    except subprocess.TimeoutExpired:
        result.error = "timed out after 600 s"
        return result
    if done.returncode != 0:
        result.error = (done.stderr.strip().splitlines() or ["no output"])[-1][:300]
        log(f"{case.key} x{events}: {result.error}")
        return result
    data = json.loads(done.stdout.strip().splitlines()[-1])
    result.over_idle_mb = (data["peak_kb"] - data["idle_kb"]) / 1024
    result.seconds = data["seconds"]
    log(f"{case.key} x{events}: +{result.over_idle_mb:.1f} MB in {result.seconds:.1f}s")
    return result


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = {}
    for dist in (
        "eventbus",
        "anyio",
        "trio",
        "uvloop",
        "pydantic",
        "blinker",
        "pyee",
        "bubus",
        "fastapi-events",
    ):
        try:
            from importlib.metadata import version

            versions[dist] = version(dist)
        except Exception:
            versions[dist] = None
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": sys.version.split()[0],
        "implementation": sys.implementation.name,
        "platform": sys.platform,
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "loadavg_start": os.getloadavg(),
        "versions": versions,
    }
