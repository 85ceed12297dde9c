"""``eventbus demo``: the chat app runs through the farm, exits 0 and says what happened."""

from __future__ import annotations

import io
import re
import subprocess
import sys

import pytest

import eventbus
from eventbus.cli import main
from eventbus.cli.demo import _Progress
from eventbus.demo import app
from eventbus.demo.events import ChatActivity, NewChatEvent, NewUserMessage
from eventbus.demo.listeners import AuditTrail, GenerateChatTitle, NewMessageListener


def summary(out: str) -> dict[str, str]:
    return {
        m.group(1): m.group(2)
        for m in re.finditer(
            r"^(events dispatched|listener runs|failures retried|throughput|"
            r"context)\s+(.*)$",
            out,
            re.M,
        )
    }


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_demo_runs_and_summarises(backend: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["demo", "--events", "400", "--latency", "0", "--backend", backend])
    out = capsys.readouterr().out
    assert code == 0, out
    lines = summary(out)
    assert lines["events dispatched"].startswith("400  (100 new_chat, 300 new_user_message)")
    assert lines["listener runs"].startswith("800 succeeded, 0 failed, 0 dropped")
    assert "GenerateChatTitle 100, NewMessageListener 300, AuditTrail 400" in lines["listener runs"]
    retried = int(lines["failures retried"].split()[0])
    assert retried == 10 + 2 * 2  # chats 3, 13, ..., 93 fail once; 7 and 57 twice
    assert "events/s" in lines["throughput"]
    assert lines["context"].startswith(f"{800 + retried} listener runs checked")
    shown = [line for line in out.splitlines() if line.endswith("  ok")]
    assert {line.split()[0] for line in shown} == {
        "GenerateChatTitle",
        "AuditTrail",
        "NewMessageListener",
    }
    assert "user=bruno locale=pt-BR" in out
    assert f"on {backend}" in out


def test_the_demo_app_is_wired_as_a_user_would(capsys: pytest.CaptureFixture[str]) -> None:
    bus = eventbus.load_provider("eventbus.demo.provider", eventbus.EventBus(driver="sync"))
    assert bus.listeners_for(NewChatEvent) == [GenerateChatTitle, AuditTrail]
    assert bus.listeners_for(NewUserMessage) == [NewMessageListener, AuditTrail]
    assert bus.listeners_for(ChatActivity) == [AuditTrail]
    assert GenerateChatTitle.tries == 3


def test_a_listener_seeing_the_wrong_user_fails_the_demo(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(app, "current_user", lambda: "mallory")
    assert main(["demo", "--events", "40", "--latency", "0"]) == 1
    captured = capsys.readouterr()
    assert "listener runs were WRONG" in captured.out
    assert "WRONG (expected" in captured.out
    assert "saw the wrong user or locale" in captured.err


def test_lost_work_fails_the_demo(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(GenerateChatTitle, "tries", 1)  # the flaky title service now loses
    assert main(["demo", "--events", "40", "--latency", "0"]) == 1
    assert "job(s) failed" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--events", "0"], "--events must be at least 1"),
        (["--concurrency", "0"], "--concurrency must be at least 1"),
        (["--latency", "-1"], "--latency must be >= 0"),
    ],
)
def test_bad_options_are_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", *argv]) == 2
    assert message in capsys.readouterr().err


def test_progress_is_a_live_line_on_a_tty_and_plain_lines_otherwise() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stats = eventbus.Stats()
    stats.dispatched, stats.succeeded = 10, 5
    tty = Tty()
    progress = _Progress(tty, 10, 20)
    progress._overwrite(progress.line(stats))
    stats.succeeded = 20
    progress.finish(stats)
    assert tty.getvalue().count("\r") == 2
    assert tty.getvalue().endswith("20/20 | running 0 | retried 0\n")
    plain = io.StringIO()
    _Progress(plain, 10, 20).finish(stats)
    assert "\r" not in plain.getvalue()
    assert plain.getvalue() == "  events 10/10 | listener runs 20/20 | running 0 | retried 0\n"


def test_python_m_eventbus_demo() -> None:
    """What the README's first command runs, as a fresh process."""
    result = subprocess.run(
        [sys.executable, "-m", "eventbus", "demo", "--events", "200"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "events dispatched  200" in result.stdout
    assert "each saw the user and locale" in result.stdout
