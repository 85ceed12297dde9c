"""Registrations and the dispatch table compiled from them, keyed by the event's MRO."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from pydantic import BaseModel

from ._annotations import UnresolvedAnnotation, listener_event_types
from ._errors import RegistrationError
from ._event import Event
from ._listener import EventListener, Listener
from ._log import logger, record
from ._names import qualified_name
from ._policy import Policy

__all__ = ["DispatchTable", "Route", "check_event_key"]


class Route(NamedTuple):
    """A listener as an event type reaches it: through which class of its MRO."""

    listener: Listener
    key: type
    inherited: bool


class DispatchTable:
    """Listeners by the class they were registered on, compiled per concrete event type.

    A listener registered on a class (or a mixin) hears that class and every subclass. The
    compiled tuple for an event type is cached, so a lookup is one dict access however many
    unrelated types are registered; any registration clears the cache.
    """

    def __init__(self, on_register: Callable[[Listener, type], None] | None = None) -> None:
        self._by_key: dict[type, list[Listener]] = {}
        self._listeners: dict[Any, Listener] = {}  # target -> compiled listener
        self._pending: list[Listener] = []  # inferred from annotations not resolvable yet
        self._cache: dict[type, tuple[Listener, ...]] = {}
        self._on_register = on_register

    # -- registration -------------------------------------------------------------------

    def listener(self, target: Any, policy: Policy | None = None) -> Listener:
        """The compiled :class:`Listener` for ``target``, created once per target."""
        existing = self._listeners.get(target)
        if existing is None:
            return self.adopt(Listener(target, policy))
        if policy is not None:
            existing.policy = policy
        return existing

    def compile(self, target: Any) -> Listener:
        """``target`` compiled (and so validated) without registering it."""
        return self._listeners.get(target) or Listener(target)

    def adopt(self, compiled: Listener) -> Listener:
        """Keep ``compiled`` as the one :class:`Listener` of its target."""
        return self._listeners.setdefault(compiled.target, compiled)

    def add(self, key: Any, listener: Listener) -> None:
        check_event_key(key)
        if self._on_register is not None:
            self._on_register(listener, key)
        bucket = self._by_key.setdefault(key, [])
        if listener in bucket:
            logger.debug(
                "%s is already registered for %s; ignoring the repeat",
                listener.name,
                qualified_name(key),
                extra=record(_name_of(key), listener.name),
            )
            return
        bucket.append(listener)
        self._cache.clear()

    def add_inferred(self, listener: Listener) -> None:
        """Register for the event types its annotation names, now or when first needed."""
        try:
            types = listener_event_types(listener, may_import=False)
        except UnresolvedAnnotation:
            self._pending.append(listener)  # a TYPE_CHECKING-only import: resolve later
            self._cache.clear()
            return
        for key in types:
            self.add(key, listener)

    def _resolve_pending(self) -> None:
        # A listener whose name still resolves to nothing stays pending, so the error repeats
        # on every lookup instead of the listener (and those after it) silently vanishing.
        pending, self._pending = self._pending, []
        error: RegistrationError | None = None
        for listener in pending:
            try:
                types = listener_event_types(listener)
            except RegistrationError as exc:
                self._pending.append(listener)
                error = error or exc
                continue
            for key in types:
                self.add(key, listener)
        if error is not None:
            raise error

    def copy(self, on_register: Callable[[Listener, type], None] | None = None) -> DispatchTable:
        """The same registrations in a new table whose changes leave this one alone.

        ``on_register`` (a new driver's check) is run on every copied registration, so a
        copy for another driver refuses what that driver cannot run.
        """
        table = DispatchTable(on_register)
        table._listeners = dict(self._listeners)
        table._pending = list(self._pending)
        for key, listeners in self._by_key.items():
            if on_register is not None:
                for listener in listeners:
                    on_register(listener, key)
            table._by_key[key] = list(listeners)
        return table

    # -- lookup -------------------------------------------------------------------------

    def lookup(self, event_type: type) -> tuple[Listener, ...]:
        """The listeners an event of ``event_type`` reaches, in order. The hot path."""
        try:
            return self._cache[event_type]
        except KeyError:
            return self._compile(event_type)

    def _compile(self, event_type: type) -> tuple[Listener, ...]:
        if self._pending:
            self._resolve_pending()
        compiled = tuple(route.listener for route in self.routes(event_type))
        if issubclass(event_type, Event):
            # Only events: the bus's hot path trusts a cache hit to be an Event type, so
            # introspecting a mixin (listeners_for(Mixin)) must not make it dispatchable.
            self._cache[event_type] = compiled
        return compiled

    def routes(self, event_type: type) -> list[Route]:
        """Like :meth:`lookup`, with the class each listener was registered on."""
        if self._pending:
            self._resolve_pending()
        seen: set[Listener] = set()
        out: list[Route] = []
        for cls in event_type.__mro__:
            for listener in self._by_key.get(cls, ()):
                if listener not in seen:
                    seen.add(listener)
                    out.append(Route(listener, cls, cls is not event_type))
        return out

    def registered_on(self, event_type: type) -> set[Listener]:
        """The listeners registered so far on ``event_type``'s MRO (no pending resolution)."""
        return {listener for cls in event_type.__mro__ for listener in self._by_key.get(cls, ())}

    def keys(self) -> list[type]:
        """Every class something is registered on, in registration order."""
        if self._pending:
            self._resolve_pending()
        return list(self._by_key)

    def all_listeners(self) -> list[Listener]:
        if self._pending:
            self._resolve_pending()
        return list(self._listeners.values())


def check_event_key(key: Any) -> None:
    """Reject what cannot key the table: an Event subclass, or a mixin class of events."""
    if not isinstance(key, type):
        raise RegistrationError(
            f"{key!r} is not an event class; keys are Event subclasses (or mixins of them)"
        )
    if issubclass(key, Event):
        return
    if issubclass(key, EventListener) or hasattr(key, "handle"):
        raise RegistrationError(
            f"{qualified_name(key)} is a listener, not an event; the provider maps event "
            "classes to lists of listeners: {NewChatEvent: [GenerateChatTitle]}"
        )
    if issubclass(key, BaseModel) or key.__module__ == "builtins":
        raise RegistrationError(
            f"{qualified_name(key)} is not an Event subclass; make it "
            "`class ...(eventbus.Event)` (plain mixin classes of events are allowed too)"
        )


def _name_of(key: type) -> str:
    return getattr(key, "event_name", key.__qualname__)
