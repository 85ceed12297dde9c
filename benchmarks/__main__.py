"""``python -m benchmarks [--quick] [--smoke] [--json out.json] [--plot out.png]``."""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import re
import sys
import time
from pathlib import Path

import benchmarks

from ._registry import memory_cases, rows
from ._report import document, plot, table, write_json
from ._runner import MemoryResult, Result, machine, measure_memory, run_rounds, time_once


def load_row_modules() -> list[str]:
    """Import every ``benchmarks.rows_*`` module (and any in $EVENTBUS_BENCH_MODULES)."""
    names = sorted(
        f"benchmarks.{m.name}"
        for m in pkgutil.iter_modules(benchmarks.__path__)
        if m.name.startswith("rows_")
    )
    names += [n for n in os.environ.get("EVENTBUS_BENCH_MODULES", "").split(",") if n]
    for name in names:
        importlib.import_module(name)
    return names


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def smoke(selected: list, log=_log) -> list[Result]:  # type: ignore[no-untyped-def, type-arg]
    """Every row once, on a handful of events: the checks run, nothing is timed."""
    results = []
    for row in selected:
        result = Result(row, n=min(row.start_n, 64))
        reason = row.unavailable()
        if reason is not None:
            result.error = f"not run: {reason}"
        else:
            try:
                result.ns.append(time_once(row, result.n) / result.n)
            except Exception as exc:
                result.error = f"{type(exc).__name__}: {exc}"
        log(f"{row.key}: {result.error or 'ok'}")
        results.append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="~0.05 s per repetition (~1 min)")
    parser.add_argument("--smoke", action="store_true", help="each row once on a few events")
    parser.add_argument("--json", type=Path, help="write the results as JSON here")
    parser.add_argument("--plot", type=Path, help="write a PNG chart (log scale) here")
    parser.add_argument("--markdown", type=Path, help="write the markdown table here")
    parser.add_argument("--only", help="regex on row keys 'S1/name/backend'")
    parser.add_argument("--rounds", type=int, help="rounds (default 5)")
    parser.add_argument("--target", type=float, help="seconds per repetition")
    parser.add_argument("--no-memory", action="store_true", help="skip S7")
    args = parser.parse_args(argv)

    load_row_modules()
    pattern = re.compile(args.only) if args.only else None
    selected = [r for r in rows() if pattern is None or pattern.search(r.key)]
    cases = [c for c in memory_cases() if pattern is None or pattern.search(c.key)]
    meta = machine()

    memory: list[MemoryResult] = []
    if args.smoke:
        results = smoke(selected)
        if not args.no_memory:
            memory = [measure_memory(c, 2000, _log) for c in cases]
    else:
        target = args.target or (0.05 if args.quick else 0.25)
        rounds = args.rounds or 5
        if rounds < 5:
            _log("note: fewer than 5 rounds; medians are not the published kind")
        meta.update(target_s=target, rounds=rounds, mode="quick" if args.quick else "full")
        results = run_rounds(selected, rounds, target, _log)
        if not args.no_memory:
            sizes = (10_000, 100_000) if args.quick else (100_000, 1_000_000)
            memory = [measure_memory(c, size, _log) for c in cases for size in sizes]
    meta["loadavg_end"] = os.getloadavg()

    markdown = table(results, memory)
    print(markdown)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(markdown + "\n")
    if args.json:
        write_json(args.json, document(results, memory, meta))
    if args.plot:
        plot(args.plot, results, meta)

    broken = [r for r in results if r.error and not r.error.startswith("not run")]
    broken_memory = [m for m in memory if m.error]
    for r in broken:
        _log(f"FAILED {r.row.key}: {r.error}")
    for m in broken_memory:
        _log(f"FAILED {m.case.key}: {m.error}")
    # A peer that cannot run is reported, not fatal; our rows and every failed check are.
    fatal = [r for r in broken if r.row.kind != "peer" or r.failed_check or args.smoke]
    return 1 if fatal or broken_memory else 0


if __name__ == "__main__":
    sys.exit(main())
