"""Issue 10 #16: ``eventbus make listener --event`` refuses an event that does not exist."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from eventbus.cli import main


def test_an_event_that_does_not_exist_writes_nothing_and_says_how_to_fix(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["make", "listener", "SendWelcome", "--event", "NoSuchEvent"]) == 1
    err = capsys.readouterr().err
    assert "the module app.events.no_such_event does not exist" in err
    assert "eventbus make event NoSuchEvent" in err
    assert not (project / "app" / "listeners" / "send_welcome.py").exists()


def test_a_dotted_path_to_a_missing_module_is_refused(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["make", "listener", "Audit", "--event", "app.chat.events.ChatOpend"]) == 1
    err = capsys.readouterr().err
    assert "app.chat.events does not exist" in err and "dotted path" in err
    assert not (project / "app" / "listeners" / "audit.py").exists()


def test_a_module_without_that_class_names_what_it_has(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "app").mkdir()
    (project / "app" / "__init__.py").write_text("")
    (project / "app" / "chat.py").write_text(
        "from eventbus import Event\n\nclass ChatOpened(Event):\n    pass\n\nVALUE = 1\n"
    )
    assert main(["make", "listener", "Audit", "--event", "app.chat.ChatOpend"]) == 1
    assert "app.chat has no class ChatOpend (it defines ChatOpened)" in capsys.readouterr().err
    assert main(["make", "listener", "Audit", "--event", "app.chat.VALUE"]) == 1
    assert "app.chat.VALUE is not an Event subclass" in capsys.readouterr().err
    assert main(["make", "listener", "Audit", "--event", "app.chat.ChatOpened"]) == 0
    assert "from app.chat import ChatOpened" in (project / "app/listeners/audit.py").read_text()


def test_an_existing_event_works_from_the_console_script_too(project: Path) -> None:
    # The `eventbus` script's sys.path does not hold the current directory; the check adds it.
    assert main(["make", "event", "NewChatEvent"]) == 0
    script = Path(sys.executable).with_name("eventbus")
    result = subprocess.run(
        [str(script), "make", "listener", "Title", "--event", "NewChatEvent"],
        cwd=project,
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert (project / "app" / "listeners" / "title.py").exists()
