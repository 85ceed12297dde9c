"""Provider ``rabbitmq_app.b1_broken``: the b1 app, in a worker with a bug planted in it.

Loading it replaces two of the worker's methods so that running any job raises and so does
dead-lettering it: the state "a runner's safety net failed", which only a bug can reach.
"""

from __future__ import annotations

from typing import Any

from eventbus.worker import Worker

from .b1_app import events

__all__ = ["events"]


async def _bug(self: Worker, *args: Any, **kwargs: Any) -> None:
    raise RuntimeError("a planted bug")


Worker._handle = _bug  # type: ignore[method-assign]
Worker._dead_letter = _bug  # type: ignore[method-assign]
