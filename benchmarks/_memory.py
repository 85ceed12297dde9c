"""Subprocess entry for S7: ``python -m benchmarks._memory KEY EVENTS`` prints JSON.

A process of its own per measurement, because peak RSS is a high-water mark: the idle
mark is read after imports and set-up, the peak after the events went through.
"""

from __future__ import annotations

import json
import resource
import sys
import time


def main(argv: list[str]) -> int:
    from .__main__ import load_row_modules
    from ._registry import memory_cases, run_on

    key, events = argv[0], int(argv[1])
    load_row_modules()
    cases = {case.key: case for case in memory_cases()}
    case = cases[key]
    idle_kb = _reset_peak()
    started = time.perf_counter()

    async def run() -> object:
        return await case.run(events)

    tallies = run_on(case.backend, run)
    seconds = time.perf_counter() - started
    for tally in tallies:
        tally.verify(key)
    peak_kb = _peak()
    print(json.dumps({"idle_kb": idle_kb, "peak_kb": peak_kb, "seconds": seconds}))
    return 0


def _status(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> int:
    """Current RSS in KiB, with the peak mark reset to it where Linux allows.

    Imports leave a transient high-water mark that later allocations can hide under;
    writing 5 to /proc/self/clear_refs resets VmHWM so the peak is the run's own.
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return _status("VmRSS") or 0


def _peak() -> int:
    hwm = _status("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
