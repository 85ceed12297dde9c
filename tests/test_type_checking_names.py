"""A TYPE_CHECKING-only annotation resolves through that import, even with a namesake loaded."""

from __future__ import annotations

import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventbus import Event, EventBus

pytestmark = pytest.mark.anyio


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"tcn_{uuid.uuid4().hex[:8]}"
    root = tmp_path / name
    root.mkdir()
    (root / "__init__.py").write_text("")
    (root / "events.py").write_text(
        textwrap.dedent(
            """
            from eventbus import Event

            class NewChatEvent(Event):
                chat_id: int
            """
        )
    )
    (root / "listeners.py").write_text(
        textwrap.dedent(
            f"""
            from typing import TYPE_CHECKING
            from eventbus import EventListener

            if TYPE_CHECKING:
                from {name}.events import NewChatEvent

            seen = []

            class GenerateChatTitle(EventListener):
                async def handle(self, event: "NewChatEvent") -> None:
                    seen.append(event)
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    for module in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[module]


class NewChatEvent(Event):  # a namesake of the package's event, loaded first
    chat_id: int


async def test_type_checking_import_beats_a_namesake(package: str) -> None:
    import importlib

    listeners = importlib.import_module(f"{package}.listeners")
    bus = EventBus(driver="sync")
    bus.listen(listeners.GenerateChatTitle)  # events module not imported yet: resolved later

    assert bus.listeners_for(NewChatEvent) == []  # the namesake is not what it meant
    events = importlib.import_module(f"{package}.events")
    assert bus.listeners_for(events.NewChatEvent) == [listeners.GenerateChatTitle]
    await bus.dispatch_now(events.NewChatEvent(chat_id=7))
    assert [e.chat_id for e in listeners.seen] == [7]
