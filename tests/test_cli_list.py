"""``eventbus list``: the compiled table as text and JSON, inherited listeners marked."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures_core import write

from eventbus.cli import main

EVENTS = '''
from eventbus import Event


class Auditable:
    """A mixin: anything that lands in the audit log."""


class ChatActivity(Event):
    chat_id: str


class NewChatEvent(ChatActivity, Auditable):
    pass


class NewUserMessage(ChatActivity):
    text: str


class Unheard(Event):
    pass
'''

LISTENERS = """
from typing import TYPE_CHECKING

from eventbus import EventListener

if TYPE_CHECKING:
    from app.events import Auditable, ChatActivity, NewChatEvent, NewUserMessage


class GenerateChatTitle(EventListener):
    tries = 3
    backoff = [1, 5]
    timeout = 30

    async def handle(self, event: "NewChatEvent") -> None: ...


class NewMessageListener(EventListener):
    async def handle(self, event: "NewUserMessage") -> None: ...


class AuditTrail(EventListener):
    async def handle(self, event: "ChatActivity") -> None: ...


class Compliance(EventListener):
    async def handle(self, event: "Auditable") -> None: ...


class Unannotated(EventListener):
    async def handle(self, event) -> None: ...  # type: ignore[no-untyped-def]
"""

PROVIDER = """
from app.events import Auditable, ChatActivity, NewChatEvent, NewUserMessage
from app.listeners.chat import AuditTrail, Compliance, GenerateChatTitle, NewMessageListener

events = {
    NewChatEvent: [GenerateChatTitle],
    NewUserMessage: [NewMessageListener],
    ChatActivity: [AuditTrail],
    Auditable: [Compliance],
}
"""


@pytest.fixture
def project(project: Path) -> Path:
    """The shared project root with the chat app, *not* on sys.path: main() must add it."""
    sys.path.remove(str(project))
    write(project, "app/__init__.py", "")
    write(project, "app/events.py", EVENTS)
    write(project, "app/listeners/__init__.py", "")
    write(project, "app/listeners/chat.py", LISTENERS)
    write(project, "app/event_provider.py", PROVIDER)
    return project


def listed(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, list[dict[str, object]]]:
    assert main(["list", "--json", *argv]) == 0
    data = json.loads(capsys.readouterr().out)
    return {row["event_name"]: row["listeners"] for row in data["events"]}


def short(listeners: list[dict[str, object]]) -> list[tuple[str, bool]]:
    return [(str(i["listener"]).rsplit(".", 1)[1], bool(i["inherited"])) for i in listeners]


def test_json_lists_each_event_with_ordered_listeners_inherited_and_policy(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = listed(capsys)  # app.event_provider by default
    assert list(table) == ["new_chat", "new_user_message", "chat_activity"]
    assert short(table["new_chat"]) == [
        ("GenerateChatTitle", False),
        ("AuditTrail", True),
        ("Compliance", True),
    ]
    assert short(table["new_user_message"]) == [("NewMessageListener", False), ("AuditTrail", True)]
    assert short(table["chat_activity"]) == [("AuditTrail", False)]
    title, audit, compliance = table["new_chat"]
    assert title["policy"] == {"tries": 3, "backoff": [1, 5], "timeout": 30.0}
    assert title["registered_on"] == "app.events.NewChatEvent"
    assert audit["registered_on"] == "app.events.ChatActivity"
    assert compliance["registered_on"] == "app.events.Auditable"
    assert audit["policy"] == {"tries": 1, "backoff": 0.0, "timeout": None}


def test_text_output_marks_inherited_listeners(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["list", "--provider", "app.event_provider"]) == 0
    out = capsys.readouterr().out
    assert "3 event type(s) from provider app.event_provider" in out
    block = out.split("new_chat  (app.events.NewChatEvent)")[1].split("\n\n")[0]
    lines = [line.strip() for line in block.strip().splitlines()]
    assert lines == [
        "1. app.listeners.chat.GenerateChatTitle",
        "tries=3 backoff=[1, 5] timeout=30.0",
        "2. app.listeners.chat.AuditTrail  [inherited from app.events.ChatActivity]",
        "tries=1 backoff=0.0 timeout=None",
        "3. app.listeners.chat.Compliance  [inherited from app.events.Auditable]",
        "tries=1 backoff=0.0 timeout=None",
    ]
    assert "unheard" not in out


def test_subclasses_of_registered_events_are_listed(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(
        project,
        "app/event_provider.py",
        """
        from app.events import ChatActivity
        from app.listeners.chat import AuditTrail

        events = {ChatActivity: [AuditTrail]}
    """,
    )
    table = listed(capsys)
    assert list(table) == ["chat_activity", "new_chat", "new_user_message"]
    assert short(table["new_user_message"]) == [("AuditTrail", True)]


def test_discover_shows_registrations_and_what_was_skipped(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["list", "--json", "--discover", "app.listeners"]) == 0
    data = json.loads(capsys.readouterr().out)
    table = {row["event_name"]: row["listeners"] for row in data["events"]}
    assert short(table["new_chat"]) == [("GenerateChatTitle", False), ("AuditTrail", True)]
    # Inference names Event subclasses only (as @listen does): the mixin one is reported.
    compliance, unannotated = data["skipped"]
    assert compliance["listener"] == "app.listeners.chat.Compliance"
    assert "not an Event subclass" in compliance["reason"]
    assert unannotated["listener"] == "app.listeners.chat.Unannotated"
    assert "no annotation" in unannotated["reason"]
    assert main(["list", "--discover", "app.listeners"]) == 0
    out = capsys.readouterr().out
    assert "discovered app.listeners" in out
    assert "not registered (2)" in out and "Unannotated" in out


def test_env_variable_names_the_provider(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write(project, "app/wiring.py", PROVIDER)
    (project / "app" / "event_provider.py").unlink()
    monkeypatch.setenv("EVENTBUS_PROVIDER", "app.wiring")
    assert list(listed(capsys)) == ["new_chat", "new_user_message", "chat_activity"]


def test_missing_and_broken_providers_exit_1(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["list", "--provider", "app.nope"]) == 1
    assert "provider module 'app.nope' was not found" in capsys.readouterr().err
    write(project, "app/broken.py", "import app.not_there\n")
    assert main(["list", "--provider", "app.broken"]) == 1
    err = capsys.readouterr().err
    assert "ModuleNotFoundError" in err and "app.not_there" in err


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["list", "--help"])
    assert exc.value.code == 0
    assert "--discover" in capsys.readouterr().out


def test_console_script_from_the_project_root(project: Path) -> None:
    """The installed ``eventbus`` script imports the project from the current directory."""
    script = shutil.which("eventbus", path=os.path.dirname(sys.executable))
    command = [script] if script else [sys.executable, "-m", "eventbus"]
    result = subprocess.run(
        [*command, "list", "--json"], capture_output=True, text=True, cwd=project
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["events"][0]["event_name"] == "new_chat"
    result = subprocess.run(
        [sys.executable, "-m", "eventbus", "make", "event", "bad-name"],
        capture_output=True,
        text=True,
        cwd=project,
    )
    assert result.returncode == 2
    assert "contains dashes" in result.stderr
