"""Requirement 10: ``listen`` preserves the decorated object's type for mypy."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

SNIPPET = Path(__file__).parent / "fixtures_core" / "typing_listen.py"


def test_listen_preserves_the_decorated_type(pytestconfig: pytest.Config, tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    store = getattr(pytestconfig, "cache", None)  # absent under -p no:cacheprovider
    cache = store.mkdir("mypy") if store is not None else None
    # Errors inside eventbus itself are the typecheck session's job, not this test's.
    command = [sys.executable, "-m", "mypy", "--strict", "--no-error-summary"]
    command += ["--follow-imports=silent"]
    if cache is not None:
        command += ["--cache-dir", str(cache)]
    # A top-level copy, checked from the project root so mypy finds the eventbus sources.
    checked = tmp_path / SNIPPET.name
    checked.write_text(SNIPPET.read_text())
    result = subprocess.run(
        [*command, str(checked)],
        cwd=Path(__file__).parent.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert not errors, result.stdout
    found = re.findall(r":(\d+): note: Revealed type is \"(.*)\"", result.stdout)
    revealed = {line: shown.replace("builtins.", "") for line, shown in found}
    lines = SNIPPET.read_text().splitlines()
    expected = {
        str(number): line.split("  # ", 1)[1]
        for number, line in enumerate(lines, start=1)
        if line.startswith("reveal_type(")
    }
    assert len(expected) == 8
    assert revealed == expected
