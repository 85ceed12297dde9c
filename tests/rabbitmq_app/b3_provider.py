"""The provider of the isolation test: ``--provider rabbitmq_app.b3_provider``."""

from __future__ import annotations

from eventbus import Event, EventListener

from .b3_events import Fragile
from .b3_listeners import CrashOrWork

events: dict[type[Event], list[type[EventListener]]] = {Fragile: [CrashOrWork]}
