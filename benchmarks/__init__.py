"""Benchmarks: eventbus against raw runtime baselines and peer libraries, in one run.

``python -m benchmarks [--quick] [--json out.json] [--plot out.png]``. Rows live in the
``benchmarks.rows_*`` modules, which are imported automatically: a module adds rows with
:func:`register` (and a scenario with :func:`scenario`), so a new transport (RabbitMQ, ...)
adds its rows by adding ``benchmarks/rows_<name>.py`` and nothing else.
"""

from __future__ import annotations

from ._registry import (
    BACKENDS,
    Body,
    Clock,
    Row,
    Tally,
    WorkMissing,
    block_of,
    memory_case,
    register,
    rows,
    run_on,
    scenario,
    scenarios,
)

__all__ = [
    "BACKENDS",
    "Body",
    "Clock",
    "Row",
    "Tally",
    "WorkMissing",
    "block_of",
    "memory_case",
    "register",
    "rows",
    "run_on",
    "scenario",
    "scenarios",
]
