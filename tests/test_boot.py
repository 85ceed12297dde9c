"""``import eventbus.boot``: the provider fills the default bus; a missing default warns."""

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
from eventbus import ProviderNotFound

PROVIDER = """
from eventbus import Event, EventListener


class NewChatEvent(Event):
    pass


class GenerateChatTitle(EventListener):
    async def handle(self, event: NewChatEvent) -> None: ...


events = {NewChatEvent: [GenerateChatTitle]}
"""


@pytest.fixture
def project(project: Path) -> Iterator[Path]:
    """The shared empty project root; ``myapp`` and ``eventbus.boot`` are forgotten too."""
    forget("myapp")
    sys.modules.pop("eventbus.boot", None)
    yield project
    forget("myapp")
    sys.modules.pop("eventbus.boot", None)


def boot() -> ModuleType:
    sys.modules.pop("eventbus.boot", None)
    return importlib.import_module("eventbus.boot")


def test_loads_app_event_provider_into_the_default_bus(project: Path) -> None:
    write(project, "app/__init__.py", "")
    write(project, "app/event_provider.py", PROVIDER)
    module = boot()
    provider = sys.modules["app.event_provider"]
    assert module.provider == "app.event_provider"
    assert eventbus.get_bus().listeners_for(provider.NewChatEvent) == [provider.GenerateChatTitle]


def test_environment_variable_names_the_provider(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(project, "myapp/__init__.py", "")
    write(project, "myapp/wiring.py", PROVIDER)
    monkeypatch.setenv("EVENTBUS_PROVIDER", "myapp.wiring")
    assert boot().provider == "myapp.wiring"
    provider = sys.modules["myapp.wiring"]
    assert eventbus.get_bus().listeners_for(provider.NewChatEvent) == [provider.GenerateChatTitle]


def test_missing_default_provider_is_a_warning_not_a_crash(
    project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="eventbus"):
        module = boot()
    assert module.provider is None
    assert eventbus.get_bus().registered_types() == []
    [record] = [r for r in caplog.records if "no event provider" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert "'app.event_provider'" in record.getMessage()


def test_provider_failing_on_import_raises_its_real_cause(project: Path) -> None:
    write(project, "app/__init__.py", "")
    write(project, "app/event_provider.py", "import app.missing_dependency\nevents = {}\n")
    with pytest.raises(ModuleNotFoundError) as exc:
        boot()
    assert exc.value.name == "app.missing_dependency"
    assert any("eventbus.boot loaded the event provider" in n for n in exc.value.__notes__)
    assert "eventbus.boot" not in sys.modules  # a later import tries again


def test_provider_raising_an_error_raises_it(project: Path) -> None:
    write(project, "app/__init__.py", "")
    write(project, "app/event_provider.py", "raise RuntimeError('database url not set')\n")
    with pytest.raises(RuntimeError, match="database url not set"):
        boot()


def test_provider_without_events_is_a_registration_error(project: Path) -> None:
    write(project, "app/__init__.py", "")
    write(project, "app/event_provider.py", "listeners = {}\n")
    with pytest.raises(eventbus.RegistrationError, match="has no `events`"):
        boot()


def test_boot_function_loads_a_named_module(project: Path) -> None:
    module = boot()
    write(project, "myapp/__init__.py", "")
    write(project, "myapp/wiring.py", PROVIDER)
    assert module.boot("myapp.wiring") == "myapp.wiring"
    provider = sys.modules["myapp.wiring"]
    assert eventbus.get_bus().listeners_for(provider.NewChatEvent) == [provider.GenerateChatTitle]
    with pytest.raises(eventbus.ProviderNotFound):  # named explicitly: missing is an error
        module.boot("myapp.absent")


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
