"""Every exception eventbus raises, in one place.

The hierarchy (each also derives from the builtin named after it, so existing ``except``
clauses keep working)::

    EventBusError
    ├── RegistrationError (TypeError)        a listener, event key or provider was rejected
    │   ├── ProviderNotFound (ModuleNotFoundError)   the provider module does not exist
    │   └── UnresolvedAnnotation             a listener's annotation names no importable event
    ├── FarmNotRunning (RuntimeError)        dispatch on a driver that is not started
    ├── QueueFull                            no room and on_full="raise"
    ├── BrokerError (ConnectionError)        the broker could not take or confirm a job
    ├── EventNotSerializable (TypeError)     an event or context value cannot travel as JSON
    ├── EventTooLarge (ValueError)           an encoded job is over max_message_size
    ├── WorkerCrashed (RuntimeError)         a worker cannot go on; it exits non-zero
    ├── JobKilledWorker                      given to failed(): the job killed its worker
    ├── ListenerBaseException                given to failed(): a listener raised a BaseException
    └── ThreadTimeout (TimeoutError)         given to failed(): a thread listener's timeout passed

Errors a *listener* raises are never wrapped, with two exceptions that exist so a failure
can be reported like any other: :class:`ListenerBaseException` (a ``BaseException`` that is
not an ``Exception`` and not a real cancellation) and :class:`ThreadTimeout`.

Two more ``EventBusError`` subclasses never reach a caller and are not exported:
``eventbus.drivers._wire.PoisonMessage`` (a body no worker can run; it becomes the dead
letter's reason) and ``eventbus.cli.make.InvalidName`` (``eventbus make`` reports it as a
usage error). tests/test_errors_module.py fails for any other exception not defined here.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BrokerError",
    "EventBusError",
    "EventNotSerializable",
    "EventTooLarge",
    "FarmNotRunning",
    "JobKilledWorker",
    "ListenerBaseException",
    "ProviderNotFound",
    "QueueFull",
    "RegistrationError",
    "ThreadTimeout",
    "UnresolvedAnnotation",
    "WorkerCrashed",
]


class EventBusError(Exception):
    """Base class of every exception eventbus raises."""


class RegistrationError(EventBusError, TypeError):
    """A listener, event key or provider was rejected when it was registered."""


class ProviderNotFound(RegistrationError, ModuleNotFoundError):
    """The provider module itself does not exist (not: one of its imports is missing)."""


class UnresolvedAnnotation(RegistrationError):
    """A listener's annotation names something not importable (yet).

    Registration keeps such a listener pending; the first lookup that still cannot resolve
    the name raises this, saying which listener and which name.
    """


class FarmNotRunning(EventBusError, RuntimeError):
    """``dispatch`` was called while the bus's driver was not running (no ``async with bus``)."""


class QueueFull(EventBusError):
    """The farm's queue had no room and the bus was created with ``on_full="raise"``."""


class BrokerError(EventBusError, ConnectionError):
    """RabbitMQ could not take a job: unreachable, no confirm in time, unroutable, nacked."""


class EventNotSerializable(EventBusError, TypeError):
    """An event (or a context value) cannot travel as JSON and come back equal."""


class EventTooLarge(EventBusError, ValueError):
    """An encoded job is larger than the driver's ``max_message_size``."""


class WorkerCrashed(EventBusError, RuntimeError):
    """A job runner of a worker ended; the worker stopped so a supervisor can restart it."""


class JobKilledWorker(EventBusError):
    """A job's worker process died while running it alone, ``crash_limit`` times.

    ``failed()`` and ``on_failure`` receive this; the message is then dead-lettered.
    """


class ListenerBaseException(EventBusError):
    """A listener raised a BaseException that is not an Exception; it is that listener's failure.

    A leaked ``asyncio.CancelledError`` (no cancellation of the caller behind it),
    ``GeneratorExit`` or a bare ``BaseException`` would otherwise tear down the farm or escape
    an :class:`ExceptionGroup`. The original is ``__cause__`` (and ``original``).
    ``KeyboardInterrupt``, ``SystemExit`` and real cancellations are never wrapped.
    """

    def __init__(self, original: BaseException) -> None:
        super().__init__(
            f"the listener raised {original!r}, a BaseException that is neither an Exception "
            "nor a cancellation of its caller; it counts as the listener's failure"
        )
        self.original = original
        self.__cause__ = original


class ThreadTimeout(EventBusError, TimeoutError):
    """A thread listener's timeout passed; its thread could not be killed and goes on."""

    def __init__(self, message: str, run: Any) -> None:
        super().__init__(message)
        #: The :class:`eventbus._threads.ThreadRun` that reports when the thread ends.
        self.run = run


# Shown as ``eventbus.X`` in tracebacks, logs and dead-letter headers: where users import
# them from, not this private module.
for _cls in (
    EventBusError,
    RegistrationError,
    ProviderNotFound,
    UnresolvedAnnotation,
    FarmNotRunning,
    QueueFull,
    BrokerError,
    EventNotSerializable,
    EventTooLarge,
    WorkerCrashed,
    JobKilledWorker,
    ListenerBaseException,
    ThreadTimeout,
):
    _cls.__module__ = "eventbus"
del _cls
