"""``eventbus make``: every path, the refusals and their exit codes, and that the output is
code a user can keep: it imports, registers, and passes ruff and mypy --strict."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import eventbus
from eventbus.cli import main


def test_make_event_writes_the_module_and_package_inits(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["make", "event", "NewChatEvent"]) == 0
    target = project / "app" / "events" / "new_chat_event.py"
    assert target.is_file()
    assert (project / "app" / "__init__.py").is_file()
    assert (project / "app" / "events" / "__init__.py").is_file()
    assert "class NewChatEvent(Event):" in target.read_text()
    assert "created app/events/new_chat_event.py" in capsys.readouterr().out
    module = importlib.import_module("app.events.new_chat_event")
    assert issubclass(module.NewChatEvent, eventbus.Event)
    assert module.NewChatEvent.event_name == "new_chat"
    assert module.NewChatEvent.__doc__


@pytest.mark.parametrize(
    ("given", "cls", "filename"),
    [
        ("new_chat_event", "NewChatEvent", "new_chat_event.py"),
        ("NewUserMessage", "NewUserMessage", "new_user_message.py"),
        ("chat", "Chat", "chat.py"),
        ("HTTPRequestSeen", "HTTPRequestSeen", "http_request_seen.py"),
    ],
)
def test_pascal_and_snake_case_names(project: Path, given: str, cls: str, filename: str) -> None:
    assert main(["make", "event", given]) == 0
    assert f"class {cls}(Event):" in (project / "app" / "events" / filename).read_text()


def test_make_listener_with_event_imports_it_for_type_checking(project: Path) -> None:
    assert main(["make", "event", "NewChatEvent"]) == 0  # --event must exist
    assert main(["make", "listener", "GenerateChatTitle", "--event", "NewChatEvent"]) == 0
    text = (project / "app" / "listeners" / "generate_chat_title.py").read_text()
    assert "if TYPE_CHECKING:\n    from app.events.new_chat_event import NewChatEvent" in text
    assert 'async def handle(self, event: "NewChatEvent") -> None:' in text
    assert "class GenerateChatTitle(EventListener):" in text


def test_make_listener_event_as_dotted_path_and_snake_case(project: Path) -> None:
    assert main(["make", "event", "ChatOpened", "--path", "app/chat/events"]) == 0
    (project / "app" / "chat" / "events" / "__init__.py").write_text(
        "from .chat_opened import ChatOpened\n\n__all__ = ['ChatOpened']\n"
    )
    assert main(["make", "listener", "audit_log", "--event", "app.chat.events.chat_opened"]) == 0
    text = (project / "app" / "listeners" / "audit_log.py").read_text()
    assert "class AuditLog(EventListener):" in text
    assert "from app.chat.events import ChatOpened" in text


def test_make_listener_without_event_annotates_event(project: Path) -> None:
    assert main(["make", "listener", "Everything"]) == 0
    text = (project / "app" / "listeners" / "everything.py").read_text()
    assert "async def handle(self, event: Event) -> None:" in text


def test_path_overrides_the_folder(project: Path) -> None:
    assert main(["make", "event", "Shipped", "--path", "shop/orders/events"]) == 0
    assert (project / "shop" / "orders" / "events" / "shipped.py").is_file()
    for folder in ("shop", "shop/orders", "shop/orders/events"):
        assert (project / folder / "__init__.py").is_file()


def test_existing_folders_are_left_alone(project: Path) -> None:
    (project / "app" / "events").mkdir(parents=True)
    assert main(["make", "event", "Shipped"]) == 0
    assert not (project / "app" / "__init__.py").exists()  # not ours to add
    assert not (project / "app" / "events" / "__init__.py").exists()


def test_never_overwrites_and_names_the_file(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["make", "event", "NewChatEvent"]) == 0
    target = project / "app" / "events" / "new_chat_event.py"
    target.write_text("# mine\n")
    capsys.readouterr()
    assert main(["make", "event", "new_chat_event"]) == 1
    err = capsys.readouterr().err
    assert "app/events/new_chat_event.py already exists" in err
    assert target.read_text() == "# mine\n"
    assert main(["make", "listener", "X", "--path", "app/events/new_chat_event.py"]) == 1
    assert "is not a folder" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("1stChat", "starts with a digit"),
        ("class", "keyword"),
        ("match", "keyword"),
        ("new chat", "contains spaces"),
        ("new-chat", "contains dashes"),
        ("new.chat", "not a valid Python class name"),
        ("Café", "not a valid Python class name"),
    ],
)
@pytest.mark.parametrize("kind", ["event", "listener"])
def test_invalid_names_are_usage_errors_saying_why(
    project: Path, capsys: pytest.CaptureFixture[str], kind: str, name: str, why: str
) -> None:
    assert main(["make", kind, name]) == 2
    assert why in capsys.readouterr().err
    assert not (project / "app").exists()


def test_invalid_event_option_is_a_usage_error(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["make", "listener", "Ok", "--event", "2fast"]) == 2
    assert "starts with a digit" in capsys.readouterr().err
    assert main(["make", "listener", "Ok", "--event", "app.class.NewChat"]) == 2
    assert "keyword" in capsys.readouterr().err


def test_missing_arguments_exit_2(project: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["make", "event"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["make"])
    assert exc.value.code == 2


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["make", "--help"],
        ["make", "event", "-h"],
        ["make", "listener", "-h"],
        ["list", "--help"],
        ["demo", "--help"],
    ],
)
def test_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    assert "usage: eventbus" in capsys.readouterr().out


def _generate_chat_project() -> None:
    assert main(["make", "event", "NewChatEvent"]) == 0
    assert main(["make", "listener", "GenerateChatTitle", "--event", "NewChatEvent"]) == 0
    assert main(["make", "listener", "Everything"]) == 0


def test_generated_files_register_and_run(project: Path) -> None:
    _generate_chat_project()
    events = importlib.import_module("app.events.new_chat_event")
    listener = importlib.import_module("app.listeners.generate_chat_title")
    bus = eventbus.EventBus({events.NewChatEvent: [listener.GenerateChatTitle]}, driver="sync")
    assert bus.listeners_for(events.NewChatEvent) == [listener.GenerateChatTitle]
    found = eventbus.discover("app.listeners", eventbus.EventBus(driver="sync"))
    assert [(d.listener.__name__, d.events) for d in found.registered] == [
        ("Everything", (eventbus.Event,)),
        ("GenerateChatTitle", (events.NewChatEvent,)),
    ]
    assert not found.skipped


def test_generated_files_pass_ruff_and_mypy_strict(project: Path) -> None:
    _generate_chat_project()
    (project / "app" / "event_provider.py").write_text(
        "from eventbus import Event, EventListener\n\n"
        "from app.events.new_chat_event import NewChatEvent\n"
        "from app.listeners.generate_chat_title import GenerateChatTitle\n\n"
        "events: dict[type[Event], list[type[EventListener]]] = {\n"
        "    NewChatEvent: [GenerateChatTitle],\n"
        "}\n"
    )
    ruff = shutil.which("ruff") or pytest.fail("ruff is a dev dependency")
    rules = "E,F,W,I,B,UP,RUF,SIM"
    result = subprocess.run(
        [ruff, "check", "--isolated", "--select", rules, "--target-version", "py311", "app"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # The editable install's import hook is invisible to mypy: point it at the package, and
    # report only errors in the generated project.
    env = {**os.environ, "MYPYPATH": str(Path(eventbus.__file__).parent.parent)}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--follow-imports=silent",
            "--no-incremental",
            "--python-version",
            "3.11",
            "app",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
