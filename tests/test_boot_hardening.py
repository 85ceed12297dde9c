"""Issue 10 #12: a missing provider or an unheard event type is never silent."""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from fixtures_core import forget, write

import eventbus
from eventbus import Event, EventBus, ProviderNotFound

PROVIDER = """
from eventbus import Event, EventListener


class NewChatEvent(Event):
    pass


class GenerateChatTitle(EventListener):
    async def handle(self, event: NewChatEvent) -> None: ...


events = {NewChatEvent: [GenerateChatTitle]}
"""


class Unheard(Event):
    n: int = 0


class AlsoUnheard(Event):
    pass


@pytest.fixture
def project(project: Path) -> Iterator[Path]:
    forget("myapp")
    sys.modules.pop("eventbus.boot", None)
    yield project
    forget("myapp")
    sys.modules.pop("eventbus.boot", None)


def boot() -> ModuleType:
    sys.modules.pop("eventbus.boot", None)
    return importlib.import_module("eventbus.boot")


def test_a_typo_in_eventbus_provider_fails_the_boot(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(project, "app/__init__.py", "")
    write(project, "app/event_provider.py", PROVIDER)
    monkeypatch.setenv("EVENTBUS_PROVIDER", "app.event_providr")
    with pytest.raises(ProviderNotFound, match=r"'app\.event_providr' was not found") as caught:
        boot()
    assert any("by EVENTBUS_PROVIDER" in note for note in caught.value.__notes__)
    assert "eventbus.boot" not in sys.modules  # fixing the variable and importing again works


def test_a_provider_named_in_boot_that_is_missing_raises(project: Path) -> None:
    module = boot()  # no app.event_provider: the default is allowed to be missing
    with pytest.raises(ProviderNotFound, match=r"'myapp\.absent' was not found") as caught:
        module.boot("myapp.absent")
    assert any("by boot()" in note for note in caught.value.__notes__)


def test_the_default_provider_missing_is_a_warning(
    project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # uvicorn's default logging shows WARNING and up, not INFO.
    with caplog.at_level(logging.WARNING, logger="eventbus"):
        module = boot()
    assert module.provider is None
    [found] = [r for r in caplog.records if "no event provider" in r.getMessage()]
    assert found.levelno == logging.WARNING
    assert "'app.event_provider'" in found.getMessage()


def unheard_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "eventbus" and r.getMessage().startswith("no listeners for")
    ]


@pytest.mark.anyio
async def test_an_unheard_event_type_is_warned_once_per_type_per_bus(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = EventBus()
    with caplog.at_level(logging.WARNING, logger="eventbus"):
        async with bus:
            await bus.dispatch(Unheard(n=1))
            await bus.dispatch(Unheard(n=2))
            await bus.dispatch_now(Unheard(n=3))
            async with bus.defer():
                await bus.dispatch(AlsoUnheard())
            await bus.dispatch_now(AlsoUnheard())
        other = EventBus(driver="sync")
        await other.dispatch_now(Unheard())
    found = unheard_warnings(caplog)
    assert [(r.levelno, r.event_name) for r in found] == [  # type: ignore[attr-defined]
        (logging.WARNING, "unheard"),
        (logging.WARNING, "also_unheard"),
        (logging.WARNING, "unheard"),
    ]
    assert repr(bus) in found[0].getMessage() and repr(other) in found[2].getMessage()
    assert "load_provider" in found[0].getMessage()


@pytest.mark.anyio
async def test_a_heard_event_type_is_not_warned(caplog: pytest.LogCaptureFixture) -> None:
    ran: list[int] = []
    bus = EventBus()

    @bus.listen
    async def record(event: Unheard) -> None:
        ran.append(event.n)

    with caplog.at_level(logging.WARNING, logger="eventbus"):
        await bus.dispatch_now(Unheard(n=1))
        await eventbus.dispatch_now(Unheard(n=2))  # the default bus has no listener
    assert ran == [1]
    [found] = unheard_warnings(caplog)
    assert "<EventBus default" in found.getMessage()
