"""Exceptions raised by eventbus itself (listener errors are never wrapped in these)."""

from __future__ import annotations

from ._listener import RegistrationError

__all__ = ["EventBusError", "FarmNotRunning", "QueueFull", "RegistrationError"]


class EventBusError(Exception):
    """Base class for errors about using the bus (not errors raised by listeners)."""


class FarmNotRunning(EventBusError, RuntimeError):
    """``dispatch`` was called on the async farm while it was not running."""


class QueueFull(EventBusError):
    """The farm's queue had no room and the bus was created with ``on_full="raise"``."""
