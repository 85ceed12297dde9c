"""``eventbus queue`` and the broker options: poison in replay-dead, --limit, the URL.

replay-dead tests use the real broker (the dead letters carry RabbitMQ's own ``x-death``);
the option tests need no broker, except where a command must reach it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from eventbus import EventBus
from eventbus.cli import main
from eventbus.drivers import _wire
from eventbus.drivers.rabbitmq import RabbitMQDriver
from eventbus.worker import REASON_HEADER

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rabbitmq_app.event_provider import events as app_events
from rabbitmq_app.harness import (
    PROVIDER,
    ROOT,
    TESTS,
    URL_,
    depth,
    drain,
    envelope,
    wait_until,
)

#: The 200 KB body that made 0.1's replay-dead raise RecursionError on every run.
NESTED = b"[" * 100_000 + b"]" * 100_000


def dead_letter(queue: str, bodies: dict[str, bytes]) -> None:
    """Put ``bodies`` into ``queue.dead`` the way the broker does: rejected from ``queue``."""

    async def run() -> None:
        bus = EventBus(app_events, driver=RabbitMQDriver(URL_, queue=queue))
        async with bus:  # declares the queue and its dead-letter queue
            channel = await bus.driver.connection.channel()  # type: ignore[attr-defined]
            for message_id, body in bodies.items():
                await channel.default_exchange.publish(
                    aio_pika.Message(body, message_id=message_id), queue
                )
            work = await channel.declare_queue(queue, passive=True)
            before = (await depth(f"{queue}.dead"))[0]
            for _ in bodies:
                message = await work.get(timeout=10)
                await message.reject(requeue=False)  # dead-lettered, with x-death
        # The broker dead-letters after the reject, not during it.
        dead = before + len(bodies)
        await wait_until(lambda: _has(f"{queue}.dead", dead), 30, f"{dead} dead letters")

    asyncio.run(run())


async def _has(queue: str, count: int) -> bool:
    return (await depth(queue))[0] == count


def test_replay_dead_moves_poison_aside_and_replays_the_rest(
    queue: str, capsys: pytest.CaptureFixture[str]
) -> None:
    poison = {"nested": NESTED, "garbage": b"\x80 not json", "a-list": b"[1, 2]"}
    good = {f"j{n}": envelope(job=f"j{n}", attempt=3, data=b'{"n":%d}' % n) for n in range(3)}
    order = ["j0", "nested", "j1", "garbage", "a-list", "j2"]
    bodies = {**poison, **good}
    dead_letter(queue, {key: bodies[key] for key in order})
    assert asyncio.run(depth(f"{queue}.dead"))[0] == 6

    assert main(["queue", "replay-dead", "--queue", queue]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"replayed 3 dead-lettered job(s) into {queue!r}; moved 3 poison message(s) (not "
        f"eventbus envelopes) to '{queue}.poison', see their x-eventbus-reason header"
    ]
    replayed = asyncio.run(drain(queue))
    assert [m.message_id for m in replayed] == ["j0", "j1", "j2"]
    assert {_wire.decode_head(m.body)[0].attempt for m in replayed} == {1}
    moved = asyncio.run(drain(f"{queue}.poison"))
    assert [m.message_id for m in moved] == ["nested", "garbage", "a-list"]
    for message in moved:
        assert message.body == poison[message.message_id]  # kept as it was
        assert str(message.headers[REASON_HEADER]).startswith("replay-dead: undecodable body")
        assert message.headers["x-death"]  # the broker's record of why it was dead-lettered
    assert "nested too deeply" in str(moved[0].headers[REASON_HEADER])
    assert asyncio.run(depth(f"{queue}.dead"))[0] == 0

    # A rerun has nothing left to trip on.
    dead_letter(queue, {"again": NESTED})
    assert main(["queue", "replay-dead", "--queue", queue]) == 0
    assert capsys.readouterr().out.startswith(f"replayed 0 dead-lettered job(s) into {queue!r}")
    assert asyncio.run(depth(f"{queue}.poison"))[0] == 1


def test_replay_dead_with_limit_counts_jobs_not_poison(
    queue: str, capsys: pytest.CaptureFixture[str]
) -> None:
    dead_letter(queue, {"p": NESTED, "j0": envelope(job="j0"), "j1": envelope(job="j1"), "q": b"x"})
    assert main(["queue", "replay-dead", "--queue", queue, "--limit", "1"]) == 0
    assert capsys.readouterr().out.startswith("replayed 1 dead-lettered job(s)")
    assert [m.message_id for m in asyncio.run(drain(queue))] == ["j0"]
    assert [m.message_id for m in asyncio.run(drain(f"{queue}.dead"))] == ["j1", "q"]
    assert [m.message_id for m in asyncio.run(drain(f"{queue}.poison"))] == ["p"]


def test_replay_dead_names_a_missing_dead_letter_queue(
    queue: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["queue", "replay-dead", "--queue", queue]) == 1  # never declared
    err = capsys.readouterr().err
    assert f"queue '{queue}.dead' does not exist" in err and "--queue" in err


@pytest.mark.parametrize("value", ["-1", "0", "two"])
def test_replay_dead_limit_below_one_is_a_usage_error(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["queue", "replay-dead", "--queue", "never-reached", f"--limit={value}"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "argument --limit: must be" in err and value in err


# -- the broker URL ---------------------------------------------------------------------


def test_help_says_where_the_url_can_come_from(capsys: pytest.CaptureFixture[str]) -> None:
    for command in (["queue", "stats"], ["queue", "replay-dead"], ["work"]):
        with pytest.raises(SystemExit):
            main([*command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "--url-file PATH" in text, command
        assert "$RABBITMQ_URL" in text and "process list" in text, command


def test_url_file_is_read_and_a_password_in_it_is_not_warned_about(
    queue: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    dead_letter(queue, {})  # declares the queues
    secret = tmp_path / "amqp-url"
    secret.write_text(URL_ + "\n")
    monkeypatch.delenv("RABBITMQ_URL", raising=False)  # only the file says where the broker is
    assert main(["queue", "stats", "--queue", queue, "--url-file", str(secret)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"queue {queue}: 0 ready")
    assert err == ""


def test_url_file_names_a_missing_or_empty_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    for path, problem in ((tmp_path / "missing", "cannot read it"), (empty, "is empty")):
        with pytest.raises(SystemExit) as exit_:
            main(["queue", "stats", "--url-file", str(path)])
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert f"--url-file {path}: " in err and problem in err


def test_url_and_url_file_together_are_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "u").write_text("amqp://h/\n")
    with pytest.raises(SystemExit) as exit_:
        main(["queue", "stats", "--url", "amqp://h/", "--url-file", str(tmp_path / "u")])
    assert exit_.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_a_password_on_the_command_line_is_warned_about(
    queue: str, capsys: pytest.CaptureFixture[str]
) -> None:
    dead_letter(queue, {})
    assert "guest:guest@" in URL_, "the test broker's URL carries a password"
    assert main(["queue", "stats", "--queue", queue, "--url", URL_]) == 0
    err = capsys.readouterr().err
    assert "warning: --url carries a password" in err and "--url-file" in err
    assert URL_ not in err  # the warning itself does not repeat it
    without = URL_.replace("guest:guest@", "")
    main(["queue", "stats", "--queue", queue, "--url", without])  # may fail to log in
    assert "warning" not in capsys.readouterr().err


def test_eventbus_work_reads_its_url_from_the_file(tmp_path: Path) -> None:
    """The worker connects where the file says (a closed port here), password masked."""
    secret = tmp_path / "amqp-url"
    secret.write_text("amqp://worker:s3cret@127.0.0.1:1/\n")
    env: dict[str, Any] = {**os.environ, "PYTHONPATH": str(TESTS)}
    env.pop("RABBITMQ_URL", None)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "eventbus",
            "work",
            "--provider",
            PROVIDER,
            "--url-file",
            str(secret),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    assert "cannot connect to RabbitMQ at amqp://worker:***@127.0.0.1:1/" in done.stderr
    assert "s3cret" not in done.stderr and "warning" not in done.stderr
