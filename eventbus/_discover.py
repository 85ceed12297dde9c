"""Event discovery: register every listener class of a package by its ``handle`` annotation.

``eventbus.discover("app.listeners")`` saves writing the provider dict: each
:class:`EventListener` subclass *defined* in a module of the package is registered for the
event types its ``handle`` annotation names (each member of a union). A listener whose
annotation is missing or names no event is reported — logged and returned — never guessed.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import pkgutil
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING

from ._annotations import listener_event_types
from ._errors import RegistrationError
from ._listener import EventListener
from ._log import NO_JOB, logger, record
from ._names import qualified_name
from ._provider import import_existing

if TYPE_CHECKING:
    from ._bus import EventBus

__all__ = ["DiscoveredListener", "Discovery", "SkippedListener", "discover"]


@dataclass(frozen=True)
class DiscoveredListener:
    """A listener class and the event types it was registered for."""

    listener: type[EventListener]
    events: tuple[type, ...]


@dataclass(frozen=True)
class SkippedListener:
    """A listener class discovery did not register, and why."""

    listener: type[EventListener]
    reason: str


@dataclass
class Discovery:
    """What :func:`discover` imported, registered and skipped."""

    package: str
    modules: list[str] = field(default_factory=list)
    registered: list[DiscoveredListener] = field(default_factory=list)
    skipped: list[SkippedListener] = field(default_factory=list)

    def __bool__(self) -> bool:
        return not self.skipped


def discover(package: str, bus: EventBus | None = None) -> Discovery:
    """Import every module of ``package`` and register its listener classes on ``bus``.

    ``bus`` defaults to the default bus. Listener classes are registered in module-name
    order, then in the order they are defined, for the event types their ``handle``
    annotation names. A name imported only under ``TYPE_CHECKING`` is resolved by importing
    what that block imports for it, so two event classes sharing a name are told apart.
    Unusable listeners are logged as warnings and returned in :attr:`Discovery.skipped`;
    errors raised while importing a module propagate unchanged.
    """
    if bus is None:
        from ._api import get_bus

        bus = get_bus()
    result = Discovery(package)
    for module in _walk(package):
        result.modules.append(module.__name__)
        for cls in _listener_classes(module):
            try:
                events = _event_types(cls, module)
                bus.listen(*events)(cls)
            except RegistrationError as exc:
                skipped = SkippedListener(cls, str(exc))
                result.skipped.append(skipped)
                logger.warning(
                    "discover(%r): not registering %s: %s",
                    package,
                    qualified_name(cls),
                    exc,
                    extra=record(listener=qualified_name(cls)),
                )
                continue
            result.registered.append(DiscoveredListener(cls, events))
            logger.debug(
                "discover(%r): %s hears %s",
                package,
                qualified_name(cls),
                ", ".join(getattr(t, "event_name", t.__qualname__) for t in events),
                extra=record(listener=qualified_name(cls)),
            )
    logger.info(
        "discover(%r): %d module(s), %d listener(s) registered, %d skipped",
        package,
        len(result.modules),
        len(result.registered),
        len(result.skipped),
        extra=NO_JOB,
    )
    return result


def _walk(package: str) -> list[ModuleType]:
    root = import_existing(
        package,
        ModuleNotFoundError(
            f"listener package {package!r} was not found; run from the project root so "
            "it is importable, or pass the dotted name of your listeners package",
            name=package,
        ),
    )
    modules = [root]
    path = getattr(root, "__path__", None)
    if path is None:  # a single module is fine too
        return modules

    def onerror(name: str) -> None:
        raise  # re-raise the import error walk_packages caught

    prefix = root.__name__ + "."
    names = sorted(info.name for info in pkgutil.walk_packages(path, prefix, onerror=onerror))
    modules.extend(importlib.import_module(name) for name in names)
    return modules


def _listener_classes(module: ModuleType) -> list[type[EventListener]]:
    """Listener classes defined in ``module`` (not imported into it), in definition order."""
    found: list[type[EventListener]] = []
    for obj in vars(module).values():
        if (
            isinstance(obj, type)
            and issubclass(obj, EventListener)
            and obj is not EventListener
            and obj.__module__ == module.__name__
            and not inspect.isabstract(obj)
        ):
            found.append(obj)
    return found


def _event_types(cls: type[EventListener], module: ModuleType) -> tuple[type, ...]:
    if not callable(getattr(cls, "handle", None)):
        raise RegistrationError(
            f"{qualified_name(cls)} has no handle method; define "
            "`async def handle(self, event: SomeEvent) -> None`"
        )
    return listener_event_types(cls)
