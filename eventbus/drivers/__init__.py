"""Drivers by name: the registry behind ``EventBus(driver="...")`` and ``QUEUE_DRIVER``.

A name maps to ``"module:Class"``; the module is imported on first use and the class cached,
so a bus on the farm never imports aio-pika, and a driver whose extra is not installed says
which ``pip install`` gives it. Third-party drivers register in the ``eventbus.drivers``
entry-point group (``mydriver = "pkg.mod:MyDriver"``) and are then usable by name, like the
built-in ones. Built-in names cannot be taken over by an entry point.

:func:`create` builds the driver a bus uses from a name (or takes an instance) plus the
bus-level options the caller actually gave; see :attr:`Driver.bus_options`.
"""

from __future__ import annotations

import importlib
import os
from importlib import metadata
from typing import Any

from .._checks import check_count, check_limit
from .._log import NO_JOB, logger
from .base import BUS_OPTIONS, Driver

__all__ = ["BUS_OPTIONS", "Driver", "ENTRY_POINT_GROUP", "create", "load", "names"]

#: The entry-point group third-party drivers register in.
ENTRY_POINT_GROUP = "eventbus.drivers"

#: Built-in driver names → ``"module:Class"``, imported only when the name is asked for.
_BUILTIN: dict[str, str] = {
    "async_farm": "eventbus.drivers.farm:AsyncFarm",
    "sync": "eventbus.drivers.sync:SyncDriver",
    "rabbitmq": "eventbus.drivers.rabbitmq:RabbitMQDriver",
    "memory": "eventbus.drivers.memory:MemoryDriver",
}

#: Built-in drivers that need an extra: name → (extra, top-level modules the extra provides).
_EXTRAS: dict[str, tuple[str, frozenset[str]]] = {
    "rabbitmq": ("rabbitmq", frozenset({"aio_pika", "aiormq", "pamqp", "yarl"})),
}

_loaded: dict[str, type[Driver]] = {}  # name → class, filled on first use


def _entry_points() -> dict[str, list[metadata.EntryPoint]]:
    """The group's entry points by name (read on each call: installs may change at runtime)."""
    found: dict[str, list[metadata.EntryPoint]] = {}
    for point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if point.name in _BUILTIN:
            logger.warning(
                "entry point %r of %s in group %r is ignored: %r is a built-in driver name",
                point.name,
                _distribution(point),
                ENTRY_POINT_GROUP,
                point.name,
                extra=NO_JOB,
            )
            continue
        found.setdefault(point.name, []).append(point)
    return found


def _distribution(point: metadata.EntryPoint) -> str:
    dist = point.dist
    if dist is None:
        return "an unknown distribution"
    return f"distribution {dist.metadata['Name']!r} {dist.version}"


def names() -> list[str]:
    """Every driver name :func:`load` accepts: the built-in ones, then entry points (sorted)."""
    return list(_BUILTIN) + sorted(_entry_points())


def _import_builtin(name: str) -> type[Driver]:
    module_name, _, attr = _BUILTIN[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        extra, provided = _EXTRAS.get(name, ("", frozenset()))
        top = (exc.name or "").partition(".")[0]
        if top in provided:
            raise ModuleNotFoundError(
                f"the {name} driver needs the '{extra}' extra ({exc.name} is not installed); "
                f"install it with: pip install 'eventbus[{extra}]'",
                name=exc.name,
            ) from exc
        if exc.name == module_name:
            raise ModuleNotFoundError(
                f"driver {name!r} is registered as {_BUILTIN[name]!r}, but module "
                f"{module_name} does not exist in this eventbus install; "
                f"use one of {_quoted(n for n in names() if n != name)}",
                name=exc.name,
            ) from exc
        raise
    return _checked(getattr(module, attr), f"built-in driver {name!r} ({_BUILTIN[name]})")


def _import_entry_point(name: str, points: list[metadata.EntryPoint]) -> type[Driver]:
    if len(points) > 1:
        owners = ", ".join(f"{_distribution(p)} ({p.value})" for p in points)
        raise ValueError(
            f"driver name {name!r} is registered by more than one entry point in group "
            f"{ENTRY_POINT_GROUP!r}: {owners}; uninstall one, or pass a Driver instance"
        )
    (point,) = points
    where = f"entry point {point.name!r} = {point.value!r} of {_distribution(point)}"
    try:
        target = point.load()
    except Exception as exc:
        raise ImportError(
            f"driver {name!r} could not be loaded from {where} in group "
            f"{ENTRY_POINT_GROUP!r}: {type(exc).__name__}: {exc}; fix or reinstall that package"
        ) from exc
    return _checked(target, where)


def _checked(target: Any, where: str) -> type[Driver]:
    if not (isinstance(target, type) and issubclass(target, Driver)):
        raise TypeError(
            f"{where} is {target!r}, not a subclass of eventbus.drivers.Driver; "
            "point it at the driver class"
        )
    return target


def load(name: str) -> type[Driver]:
    """The driver class registered as ``name`` (imported on first use, then cached)."""
    cls = _loaded.get(name)
    if cls is not None:
        return cls
    if name in _BUILTIN:
        cls = _import_builtin(name)
    else:
        points = _entry_points().get(name)
        if not points:
            raise LookupError(name)
        cls = _import_entry_point(name, points)
    _loaded[name] = cls
    return cls


def _quoted(items: Any) -> str:
    return ", ".join(repr(item) for item in items)


def _check_values(given: dict[str, Any]) -> None:
    # Checked before the driver is chosen, so a bad value fails the same way on any driver.
    unknown = set(given) - BUS_OPTIONS
    if unknown:
        raise TypeError(
            f"unknown bus-level driver option(s) {sorted(unknown)}; "
            f"the bus-level options are {sorted(BUS_OPTIONS)}"
        )
    for option in ("max_concurrency", "max_queue"):
        if option in given:
            check_count(given[option], f"EventBus: {option}")
    if "drain_timeout" in given:
        check_limit(given["drain_timeout"], "EventBus: drain_timeout", zero_ok=True)


def create(driver: Driver | str | None, **given: Any) -> Driver:
    """The driver for a bus: ``driver`` itself, or the class registered under that name.

    ``None`` means ``$QUEUE_DRIVER``, else ``"async_farm"``. ``given`` holds only the
    bus-level options the caller passed (:data:`BUS_OPTIONS`); a driver class receives the
    ones it declares in :attr:`Driver.bus_options`, and any other is an error naming the
    option and the driver, as is any option with a driver instance (configure it instead).
    """
    _check_values(given)
    if isinstance(driver, Driver):
        if given:
            cls_name = type(driver).__name__
            raise TypeError(
                f"EventBus({_options(given)}) with a driver instance ({cls_name}): bus-level "
                "options only configure a driver chosen by name; configure the instance "
                f"instead: {cls_name}({', '.join(f'{k}=...' for k in sorted(given))})"
            )
        return driver
    if driver is not None and not isinstance(driver, str):
        raise TypeError(
            f"driver must be a driver name or a Driver instance, got {driver!r}; "
            f"the names are {_quoted(names())}"
        )
    source = "driver=" if driver is not None else "QUEUE_DRIVER="
    name = driver if driver is not None else os.environ.get("QUEUE_DRIVER", "async_farm")
    try:
        cls = load(name)
    except LookupError:
        raise ValueError(
            f"unknown queue driver {source}{name!r}; valid names are {_quoted(names())} "
            f"(built-in, and entry points in group {ENTRY_POINT_GROUP!r}), "
            "or pass a Driver instance"
        ) from None
    refused = sorted(set(given) - cls.bus_options)
    if refused:
        accepted = sorted(cls.bus_options)
        uses = f"uses only {', '.join(accepted)}" if accepted else "takes no bus-level options"
        raise TypeError(
            f"EventBus({_options({k: given[k] for k in refused})}): the {name!r} driver "
            f"({cls.__qualname__}) does not use {', '.join(refused)} (it {uses}); remove "
            "it, or choose a driver that uses it"
        )
    return cls(**given)


def _options(given: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value!r}" for key, value in sorted(given.items()))
