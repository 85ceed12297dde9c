"""Loading registrations from a provider module (``app/event_provider.py``)."""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import TYPE_CHECKING

from ._errors import ProviderNotFound, RegistrationError

if TYPE_CHECKING:
    from ._bus import EventBus

__all__ = [
    "PROVIDER_ENV",
    "ProviderNotFound",
    "import_existing",
    "is_missing",
    "load_provider",
    "provider_module",
]

DEFAULT_PROVIDER = "app.event_provider"

#: Environment variable naming the provider module.
PROVIDER_ENV = "EVENTBUS_PROVIDER"


def provider_module(module: str | None = None) -> str:
    """``module``, else ``$EVENTBUS_PROVIDER``, else ``app.event_provider``.

    One lookup order for boot, ``eventbus list`` and ``eventbus work``, so they always agree
    on which provider an app has.
    """
    return module or os.environ.get(PROVIDER_ENV) or DEFAULT_PROVIDER


def is_missing(module: str, exc: ModuleNotFoundError) -> bool:
    """Whether ``exc`` says ``module`` (or a parent package) is missing, not one of its imports."""
    return exc.name is not None and (module == exc.name or module.startswith(exc.name + "."))


def import_existing(module: str, missing: Exception) -> ModuleType:
    """Import ``module``; raise ``missing`` (the fix for the user) if ``module`` itself is absent.

    A module that exists but fails on one of *its* imports raises that error unchanged: the
    real cause, not a misleading "not found".
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if is_missing(module, exc):
            raise missing from exc
        raise


def load_provider(module: str = DEFAULT_PROVIDER, bus: EventBus | None = None) -> EventBus:
    """Import ``module`` and register its ``events`` dict on ``bus`` (the default bus).

    A ``lifespan`` in the module (an ``@asynccontextmanager`` function taking no arguments)
    is added with :meth:`EventBus.add_lifespan`: the app's resources open before the bus's
    first job and close after its last, in the web app and in ``eventbus work`` alike.
    """
    from ._bus import _check_lifespan

    if bus is None:
        from ._api import get_bus

        bus = get_bus()
    imported = import_existing(
        module,
        ProviderNotFound(
            f"provider module {module!r} was not found; create it with an `events` dict, "
            "or point EVENTBUS_PROVIDER / --provider at yours (run from the project root "
            "so it is importable)"
        ),
    )
    events = getattr(imported, "events", None)
    if events is None:
        raise RegistrationError(
            f"provider module {module!r} has no `events`; define "
            "`events = {NewChatEvent: [GenerateChatTitle]}` in it"
        )
    lifespan = getattr(imported, "lifespan", None)
    if lifespan is not None:
        _check_lifespan(lifespan)  # before registering: a bad provider leaves the bus as it was
    bus.register(events, source=f"{module}.events")
    if lifespan is not None:
        bus.add_lifespan(lifespan)
    return bus
