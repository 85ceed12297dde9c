"""eventbus: say what happened, let side effects happen elsewhere.

The module-level functions work on a process-wide default bus (:func:`get_bus`). This
module only re-exports; each concept lives in its own private module.
"""

from __future__ import annotations

from . import context
from ._api import dispatch, dispatch_now, get_bus, listen, set_bus
from ._bus import EventBus
from ._discover import DiscoveredListener, Discovery, SkippedListener, discover
from ._errors import (
    BrokerError,
    EventBusError,
    EventNotSerializable,
    EventTooLarge,
    FarmNotRunning,
    JobKilledWorker,
    ListenerBaseException,
    ProviderNotFound,
    QueueFull,
    RegistrationError,
    ThreadTimeout,
    WorkerCrashed,
)
from ._event import Event
from ._job import Job, current_job
from ._listener import EventListener, Listener
from ._policy import Policy
from ._provider import load_provider
from ._stats import Stats
from ._table import Route
from .context import define_key
from .drivers.base import Driver

__all__ = [
    "BrokerError",
    "DiscoveredListener",
    "Discovery",
    "Driver",
    "Event",
    "EventBus",
    "EventBusError",
    "EventListener",
    "EventNotSerializable",
    "EventTooLarge",
    "FarmNotRunning",
    "Job",
    "JobKilledWorker",
    "Listener",
    "ListenerBaseException",
    "Policy",
    "ProviderNotFound",
    "QueueFull",
    "RegistrationError",
    "Route",
    "SkippedListener",
    "Stats",
    "ThreadTimeout",
    "WorkerCrashed",
    "context",
    "current_job",
    "define_key",
    "discover",
    "dispatch",
    "dispatch_now",
    "get_bus",
    "listen",
    "load_provider",
    "set_bus",
]

__version__ = "0.1.0"
