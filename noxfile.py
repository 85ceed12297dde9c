"""Developer sessions: ``nox -s tests lint typecheck bench``."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True


@nox.session
def tests(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.5")
    session.run("ruff", "check", "eventbus", "tests", "benchmarks")


@nox.session
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("mypy", "--strict", "eventbus")


@nox.session
def bench(session: nox.Session) -> None:
    """The full benchmark run; rewrites benchmarks/results/ (pass args to override)."""
    session.install("-e", ".[bench]")
    args = session.posargs or [
        "--json",
        "benchmarks/results/results.json",
        "--plot",
        "benchmarks/results/chart.png",
        "--markdown",
        "benchmarks/results/table.md",
    ]
    session.run("python", "-m", "benchmarks", *args)
