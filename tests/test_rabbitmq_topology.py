"""Delay tiers: a fixed ladder of delay queues that expire when idle (issue 10, item 11).

Real RabbitMQ and a real ``eventbus work`` process on ``rabbitmq_app.gated_provider``.
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from eventbus import EventBus, EventListener, RegistrationError
from eventbus.drivers.rabbitmq import DELAY_EXPIRES_MARGIN_MS, DELAY_TIERS_MS, RabbitMQDriver

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rabbitmq_app.events import Numbered
from rabbitmq_app.gated_provider import TEN_BACKOFFS, Tiered, Waits
from rabbitmq_app.gated_provider import events as gated_events
from rabbitmq_app.harness import URL_, results, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.rabbitmq]

GATED = "rabbitmq_app.gated_provider"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def figure(text: str) -> None:
    print(f"\n[reliability] {text}")


def broker_queues(prefix: str) -> dict[str, dict[str, Any]]:
    """Every queue on the broker named ``prefix...``, with its arguments (rabbitmqctl)."""
    rabbitmqctl = shutil.which("rabbitmqctl")
    assert rabbitmqctl, "rabbitmqctl is needed to list the broker's queues"
    listing = subprocess.run(
        [rabbitmqctl, "list_queues", "name", "arguments", "--formatter", "json", "-q"],
        capture_output=True,
        text=True,
        check=True,
    )
    return {
        row["name"]: {key: value for key, _, value in row["arguments"]}
        for row in json.loads(listing.stdout)
        if row["name"].startswith(prefix)
    }


def test_the_ladder_is_bounded_and_every_tier_fits_rabbitmq() -> None:
    assert len(DELAY_TIERS_MS) == 87
    assert list(DELAY_TIERS_MS) == sorted(set(DELAY_TIERS_MS))
    assert max(b / a for a, b in itertools.pairwise(DELAY_TIERS_MS)) <= 1.3
    assert DELAY_TIERS_MS[-1] + DELAY_EXPIRES_MARGIN_MS < 2**32  # x-expires fits too


async def test_ten_distinct_backoffs_share_the_ladders_delay_queues(
    queue: str, workers: Any
) -> None:
    await workers(1, "--provider", GATED, "--concurrency", "4")
    bus = EventBus(gated_events, driver=RabbitMQDriver(URL_, queue=queue))
    async with bus:
        await bus.dispatch(Tiered(n=1))
    await wait_until(
        lambda: any(r.kind == "failed" for r in results(workers.results)), 60, "failed()"
    )
    attempts = sorted(
        (r for r in results(workers.results) if r.kind == "attempt"), key=lambda r: r.at
    )
    gaps = [b.at - a.at for a, b in itertools.pairwise(attempts)]
    queues = broker_queues(f"{queue}.")
    delay_queues = {name: args for name, args in queues.items() if ".delay." in name}
    figure(
        f"delay tiers: 10 distinct backoffs {TEN_BACKOFFS} used {len(delay_queues)} delay "
        f"queues ({', '.join(sorted(delay_queues))}); each retry's wait over its backoff: "
        f"{', '.join(f'+{(g - b) * 1000:.0f}ms' for g, b in zip(gaps, TEN_BACKOFFS, strict=False))}"
    )
    assert [r.attempt for r in attempts] == list(range(1, 12))
    tiers = {125: (0.11, 0.12), 160: (0.13, 0.14, 0.15, 0.16), 200: (0.17, 0.18, 0.19, 0.2)}
    # Every queue of this bus but the work queue (a quorum queue listed by name alone).
    assert set(queues) == {f"{queue}.dead", *(f"{queue}.delay.{ms}ms" for ms in tiers)}
    for ms in tiers:
        assert delay_queues[f"{queue}.delay.{ms}ms"] == {
            "x-message-ttl": ms,
            "x-expires": ms + DELAY_EXPIRES_MARGIN_MS,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": queue,
        }
    # No retry starts before its backoff, nor before its tier's TTL (the backoff rounded up).
    waited = [next(ms for ms, group in tiers.items() if b in group) / 1000 for b in TEN_BACKOFFS]
    for gap, backoff, tier in zip(gaps, TEN_BACKOFFS, waited, strict=True):
        assert tier >= backoff
        assert gap >= tier, (gap, backoff, tier)


async def test_queue_stats_shows_a_retry_waiting_in_its_delay_queue(
    queue: str, workers: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from eventbus.cli import main

    await workers(1, "--provider", GATED, "--concurrency", "4")
    bus = EventBus(gated_events, driver=RabbitMQDriver(URL_, queue=queue))
    async with bus:
        await bus.dispatch(Waits(n=1))  # fails once, then waits 30 s (the 31.5 s tier)
    waiting = f"{queue}.delay.31500ms"
    await wait_until(lambda: waiting in broker_queues(waiting), 30, f"queue {waiting}")

    def stats(*args: str) -> str:
        assert main(["queue", "stats", "--queue", queue, *args]) == 0
        return capsys.readouterr().out

    async def delays() -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = json.loads(await anyio.to_thread.run_sync(stats, "--json"))[
            "delays"
        ]
        return found

    await wait_until(delays, 30, "the retry in its delay queue")
    assert await delays() == [{"name": waiting, "messages": 1, "consumers": 0, "delay_ms": 31500}]
    assert (await anyio.to_thread.run_sync(stats)).splitlines() == [
        f"queue {queue}: 0 ready, 1 consumer(s)",
        f"dead-lettered ({queue}.dead): 0",
        f"poison ({queue}.poison): 0",
        f"waiting to retry: 1 ({waiting}: 1)",
    ]


class WaitsTooLong(EventListener):
    tries = 2
    backoff = (1.0, 5_000_000.0)  # only the first is used with tries=2: accepted

    async def handle(self, event: Numbered) -> None: ...


class WaitsTooLongNow(WaitsTooLong):
    tries = 3


def test_a_backoff_longer_than_the_longest_tier_is_refused_at_registration() -> None:
    EventBus({Numbered: [WaitsTooLong]}, driver=RabbitMQDriver(URL_, queue="unused"))

    with pytest.raises(RegistrationError, match=r"WaitsTooLongNow: backoff 5000000\.0s is longer"):
        EventBus({Numbered: [WaitsTooLongNow]}, driver=RabbitMQDriver(URL_, queue="unused"))


async def test_a_delay_queue_deleted_by_hand_is_declared_again_on_its_next_use(
    queue: str,
) -> None:
    import aio_pika

    from eventbus.drivers.rabbitmq import BrokerError

    bus = EventBus(gated_events, driver=RabbitMQDriver(URL_, queue=queue))
    async with bus:
        driver: RabbitMQDriver = bus.driver  # type: ignore[assignment]
        name = await driver.topology.declare_delay(driver.connection, 0.2)
        assert name == f"{queue}.delay.200ms"
        channel = await driver.connection.channel()
        await channel.queue_delete(name)  # an operator cleaning up
        with pytest.raises(BrokerError, match="could not route"):
            await driver.publish(b"{}", name, message_id="m")  # a worker's retry: given back
        assert await driver.topology.declare_delay(driver.connection, 0.2) == name
        declared = await channel.declare_queue(name, passive=True)  # raises if it is missing
        assert declared.declaration_result.message_count == 0
        await channel.default_exchange.publish(aio_pika.Message(b"{}"), name, mandatory=True)
