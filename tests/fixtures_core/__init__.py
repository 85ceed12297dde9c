"""Throwaway modules written to ``tmp_path`` for tests that need real import machinery.

Annotation inference reads a listener's *module* (its globals, ``TYPE_CHECKING`` imports),
so those tests need listeners defined in files, not in the test body. Each :class:`Modules`
gets a unique package name and replaces ``PKG`` / ``TOK`` in the sources, so event class
names never collide with another test's (the by-name fallback would call them ambiguous).
"""

from __future__ import annotations

import importlib
import sys
import textwrap
import uuid
from pathlib import Path
from types import ModuleType

import pytest


def write(root: Path, path: str, source: str) -> None:
    """Write ``root/path`` (folders created), dedenting ``source``."""
    target = root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(textwrap.dedent(source))


def forget(*packages: str) -> None:
    """Drop ``packages`` and their submodules from ``sys.modules``, so the next test re-imports."""
    for name in [n for n in sys.modules if n.split(".")[0] in packages]:
        del sys.modules[name]
    importlib.invalidate_caches()


class Modules:
    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch, package: str = "") -> None:
        self.root = root
        self.token = uuid.uuid4().hex[:8]
        self.package = package or f"fx_{self.token}"
        monkeypatch.syspath_prepend(str(root))
        importlib.invalidate_caches()

    def write(self, module: str, source: str) -> str:
        """Write ``PKG.<module>`` (dotted, below the package); return its full dotted name."""
        dotted = f"{self.package}.{module}"
        parts = dotted.split(".")
        directory = self.root
        for part in parts[:-1]:
            directory = directory / part
            directory.mkdir(exist_ok=True)
            (directory / "__init__.py").touch()
        text = textwrap.dedent(source).replace("PKG", self.package).replace("TOK", self.token)
        (directory / f"{parts[-1]}.py").write_text(text)
        importlib.invalidate_caches()
        return dotted

    def load(self, module: str) -> ModuleType:
        return importlib.import_module(f"{self.package}.{module}")

    def forget(self) -> None:
        for name in [n for n in sys.modules if n.split(".")[0] == self.package]:
            del sys.modules[name]
        importlib.invalidate_caches()
