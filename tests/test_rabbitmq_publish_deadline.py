"""publish_timeout bounds a dispatch whose confirm never comes; a caller's cancel stays one.

The producer talks to the broker through a TCP proxy this test controls: once it holds the
client's bytes (a fact: the proxy saw them), no confirm can arrive.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from yarl import URL

from eventbus import EventBus
from eventbus.drivers.rabbitmq import BrokerError, RabbitMQDriver

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rabbitmq_app.event_provider import events as app_events
from rabbitmq_app.events import Numbered
from rabbitmq_app.harness import URL_

pytestmark = [pytest.mark.anyio, pytest.mark.rabbitmq]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class HoldingProxy:
    """Forwards TCP to the broker; while ``hold`` is set, keeps the client's bytes back."""

    def __init__(self) -> None:
        self.hold = False
        self.held = asyncio.Event()  # set once bytes were kept back
        self._backlog: list[tuple[asyncio.StreamWriter, bytes]] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        target = URL(URL_)
        up_r, up_w = await asyncio.open_connection(target.host or "127.0.0.1", target.port or 5672)
        await asyncio.gather(self._pipe(reader, up_w, up=True), self._pipe(up_r, writer, up=False))

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, up: bool) -> None:
        try:
            while data := await src.read(65536):
                if up and self.hold:
                    self._backlog.append((dst, data))
                    self.held.set()
                    continue
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            dst.close()

    def release(self) -> None:
        self.hold = False
        for dst, data in self._backlog:
            dst.write(data)
        self._backlog.clear()

    async def close(self) -> None:
        self.server.close()


async def test_dispatch_raises_broker_error_after_publish_timeout(queue: str) -> None:
    proxy = HoldingProxy()
    port = await proxy.start()
    url = str(URL(URL_).with_port(port))
    bus = EventBus(app_events, driver=RabbitMQDriver(url, queue=queue, publish_timeout=0.5))
    try:
        async with bus:
            await bus.dispatch(Numbered(n=0))  # the path works
            proxy.hold = True
            started = time.monotonic()
            with pytest.raises(BrokerError, match=r"did not confirm 1 job\(s\).*0\.5s"):
                await bus.dispatch(Numbered(n=1))
            assert 0.5 <= time.monotonic() - started < 30
            assert proxy.held.is_set()

            # A cancel from the caller is the caller's: CancelledError, not BrokerError.
            proxy.held.clear()
            task: asyncio.Task[Any] = asyncio.create_task(bus.dispatch(Numbered(n=2)))
            await asyncio.wait_for(proxy.held.wait(), 30)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
            proxy.release()
            await bus.dispatch(Numbered(n=3))  # and the connection still works
    finally:
        proxy.release()
        await proxy.close()
