"""``import eventbus.boot``: fill the default bus from the app's provider module.

Import it once where the app starts (``main.py``, the ASGI module, a worker entry point)::

    import eventbus.boot  # noqa: F401

It loads ``app.event_provider`` (or the module named by ``EVENTBUS_PROVIDER``) into the
default bus. A project without ``app.event_provider`` boots with an empty bus and a warning;
a provider named explicitly (``EVENTBUS_PROVIDER``, ``boot("...")``) that does not exist
raises :class:`~eventbus.ProviderNotFound`; a provider that fails while importing raises its
own error, with a note saying which provider was being loaded.
"""

from __future__ import annotations

import os

from ._log import NO_JOB, logger
from ._provider import PROVIDER_ENV, ProviderNotFound, load_provider, provider_module

__all__ = ["PROVIDER_ENV", "boot", "provider"]


def boot(module: str | None = None) -> str | None:
    """Load ``module`` (default: ``$EVENTBUS_PROVIDER`` or ``app.event_provider``).

    Returns the module name that was loaded, or ``None`` when the default provider does not
    exist (logged as a warning). A provider asked for by name — ``module`` or
    ``$EVENTBUS_PROVIDER`` — that does not exist raises :class:`ProviderNotFound`: booting an
    app with an empty bus because of a typo would lose every event without a word.
    """
    asked_by = "boot()" if module else PROVIDER_ENV if os.environ.get(PROVIDER_ENV) else None
    name = provider_module(module)
    try:
        load_provider(name)
    except ProviderNotFound as exc:
        if asked_by is not None:
            exc.add_note(f"eventbus.boot was asked for {name!r} by {asked_by}")
            raise
        logger.warning(
            "no event provider module %r; the default bus starts empty and dispatched events "
            "run nothing (set %s to point at yours, and run from the project root so it is "
            "importable)",
            name,
            PROVIDER_ENV,
            extra=NO_JOB,
        )
        return None
    except BaseException as exc:
        exc.add_note(f"raised while eventbus.boot loaded the event provider {name!r}")
        raise
    logger.debug("loaded event provider %r into the default bus", name, extra=NO_JOB)
    return name


#: The provider module this import loaded, or ``None`` if there was none.
provider: str | None = boot()
