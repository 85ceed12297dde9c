"""The library's logger and the fields every record carries.

Each record has ``event_name``, ``listener`` and ``attempt`` (``None`` where a record is not
about one job), so a format such as ``%(event_name)s %(listener)s`` never fails and log
pipelines can index on them.
"""

from __future__ import annotations

import logging
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._event import Event
    from ._listener import Listener

__all__ = ["NO_JOB", "job_record", "logger", "record"]

logger = logging.getLogger("eventbus")


def record(
    event_name: str | None = None, listener: str | None = None, attempt: int | None = None
) -> dict[str, Any]:
    return {"event_name": event_name, "listener": listener, "attempt": attempt}


#: For records about no job in particular (startup, shutdown, drain, reconnects).
NO_JOB = MappingProxyType(record())


def job_record(event: Event, listener: Listener, attempt: int) -> dict[str, Any]:
    return record(event.event_name, listener.name, attempt)
