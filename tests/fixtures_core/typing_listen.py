"""Checked by ``mypy --strict`` in tests/test_typing.py: ``listen`` keeps the decorated type.

Each ``reveal_type`` line's expected type is in the comment after it.
"""

from __future__ import annotations

from typing import reveal_type

import eventbus
from eventbus import Event, EventBus, EventListener


class Opened(Event):
    pass


class Closed(Event):
    pass


class Mixin:
    pass


bus = EventBus()


@bus.listen(Opened)
async def on_opened(event: Opened) -> None: ...


@bus.listen(Opened, Closed, tries=2)
def on_either(event: Opened | Closed) -> int:
    return 1


@bus.listen
async def inferred(event: Opened) -> None: ...


@bus.listen(timeout=1)
async def policy_only(event: Opened) -> None: ...


@bus.listen(Opened)
class OnOpened(EventListener):
    async def handle(self, event: Opened) -> None: ...


@bus.listen
class Inferred(EventListener):
    def handle(self, event: Opened) -> None: ...


@eventbus.listen(Opened)
async def default_bus(event: Opened) -> None: ...


@eventbus.listen
def default_bare(event: Opened) -> str:
    return ""


reveal_type(on_opened)  # def (event: typing_listen.Opened) -> typing.Coroutine[Any, Any, None]
reveal_type(on_either)  # def (event: typing_listen.Opened | typing_listen.Closed) -> int
reveal_type(inferred)  # def (event: typing_listen.Opened) -> typing.Coroutine[Any, Any, None]
reveal_type(policy_only)  # def (event: typing_listen.Opened) -> typing.Coroutine[Any, Any, None]
reveal_type(OnOpened)  # def () -> typing_listen.OnOpened
reveal_type(Inferred)  # def () -> typing_listen.Inferred
reveal_type(default_bus)  # def (event: typing_listen.Opened) -> typing.Coroutine[Any, Any, None]
reveal_type(default_bare)  # def (event: typing_listen.Opened) -> str
