"""Event discovery: register every listener class of a package by its ``handle`` annotation.

``eventbus.discover("app.listeners")`` saves writing the provider dict: each
:class:`EventListener` subclass *defined* in a module of the package is registered for the
event types its ``handle`` annotation names (each member of a union). A listener whose
annotation is missing or names no event is reported — logged and returned — never guessed.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import importlib.util
import inspect
import logging
import pkgutil
import typing
from dataclasses import dataclass, field
from types import ModuleType, UnionType
from typing import TYPE_CHECKING, Any

from ._event import Event
from ._listener import EventListener, RegistrationError, listener_event_types, qualified_name

if TYPE_CHECKING:
    from ._bus import EventBus

__all__ = ["DiscoveredListener", "Discovery", "SkippedListener", "discover"]

logger = logging.getLogger("eventbus")


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
        from . import get_bus

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
                    extra={"listener": qualified_name(cls)},
                )
                continue
            result.registered.append(DiscoveredListener(cls, events))
            logger.debug(
                "discover(%r): %s hears %s",
                package,
                qualified_name(cls),
                ", ".join(getattr(t, "event_name", t.__qualname__) for t in events),
                extra={"listener": qualified_name(cls)},
            )
    logger.info(
        "discover(%r): %d module(s), %d listener(s) registered, %d skipped",
        package,
        len(result.modules),
        len(result.registered),
        len(result.skipped),
    )
    return result


def _walk(package: str) -> list[ModuleType]:
    try:
        root = importlib.import_module(package)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (package == exc.name or package.startswith(exc.name + ".")):
            raise ModuleNotFoundError(
                f"listener package {package!r} was not found; run from the project root so "
                "it is importable, or pass the dotted name of your listeners package",
                name=package,
            ) from exc
        raise
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
    annotation = _event_annotation(cls)
    if isinstance(annotation, str):
        specs = _type_checking_imports(module)
        if specs:
            namespace = _TypeCheckingNames(vars(module), specs)
            try:
                resolved = eval(annotation, {"__builtins__": builtins}, namespace)
            except NameError:
                pass  # not a TYPE_CHECKING name: the generic resolution below explains
            except ImportError as exc:
                raise RegistrationError(
                    f"{qualified_name(cls)}: importing the TYPE_CHECKING import behind "
                    f"{annotation!r} failed: {exc}"
                ) from exc
            else:
                return _event_members(cls, annotation, resolved)
    return listener_event_types(cls)


def _event_annotation(cls: type) -> Any:
    params = list(inspect.signature(cls.handle).parameters.values())[1:]  # type: ignore[attr-defined]
    return params[0].annotation if params else None


def _event_members(cls: type, annotation: str, resolved: Any) -> tuple[type, ...]:
    is_union = isinstance(resolved, UnionType) or typing.get_origin(resolved) is typing.Union
    members = typing.get_args(resolved) if is_union else (resolved,)
    for member in members:
        if not (isinstance(member, type) and issubclass(member, Event)):
            raise RegistrationError(
                f"{qualified_name(cls)}: the event parameter's annotation {annotation!r} names "
                f"{member!r}, which is not an Event subclass"
            )
    return tuple(members)


class _TypeCheckingNames(dict[str, Any]):
    """Module globals, then the names its ``if TYPE_CHECKING:`` blocks import (on demand)."""

    def __init__(self, module_globals: dict[str, Any], specs: dict[str, tuple[str, str | None]]):
        super().__init__(module_globals)
        self.specs = specs

    def __missing__(self, key: str) -> Any:
        spec = self.specs.get(key)
        if spec is None:
            raise KeyError(key)
        module_name, attr = spec
        imported = importlib.import_module(module_name)
        value = imported if attr is None else getattr(imported, attr)
        self[key] = value
        return value


def _type_checking_imports(module: ModuleType) -> dict[str, tuple[str, str | None]]:
    """``{bound name: (module, attribute or None)}`` for the module's TYPE_CHECKING imports."""
    try:
        source = inspect.getsource(module)
    except (OSError, TypeError):
        return {}
    specs: dict[str, tuple[str, str | None]] = {}
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.If) and _is_type_checking(node.test)):
            continue
        for stmt in node.body:
            if isinstance(stmt, ast.ImportFrom):
                base = "." * stmt.level + (stmt.module or "")
                source_module = importlib.util.resolve_name(base, module.__package__ or "")
                for alias in stmt.names:
                    specs[alias.asname or alias.name] = (source_module, alias.name)
            elif isinstance(stmt, ast.Import):
                for alias in stmt.names:
                    if alias.asname:
                        specs[alias.asname] = (alias.name, None)
                    else:
                        top = alias.name.partition(".")[0]
                        specs[top] = (top, None)
    return specs


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
