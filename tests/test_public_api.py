"""The public API: ``__all__`` resolves, and every ``eventbus.X`` the README uses exists."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import eventbus

README = Path(__file__).resolve().parents[1] / "README.md"


def test_every_name_in_all_is_importable() -> None:
    missing = [name for name in eventbus.__all__ if not hasattr(eventbus, name)]
    assert missing == []


def test_every_eventbus_name_the_readme_uses_exists() -> None:
    used = set(re.findall(r"\beventbus\.([A-Za-z_]\w*)", README.read_text()))
    submodules = {"boot", "context", "drivers", "testing", "worker"}
    assert used - submodules, "the README names no eventbus.X at all?"
    for name in sorted(used):
        if name in submodules:
            assert importlib.util.find_spec(f"eventbus.{name}") is not None  # not run: boot loads
        else:
            assert name in eventbus.__all__, f"README uses eventbus.{name}, not in __all__"


def test_discovery_result_types_are_public() -> None:
    assert {"Discovery", "DiscoveredListener", "SkippedListener"} <= set(eventbus.__all__)
