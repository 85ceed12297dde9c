"""``bus.intercept(fn)``: offer every dispatched event to ``fn`` before any listener runs.

The hook test doubles are built on (:meth:`EventBus.fake` is one). While the block runs,
``dispatch`` and ``dispatch_now`` call ``fn(event)`` first; a true result swallows the event.
The bus holds a single callable, ``None`` when nothing intercepts, so the hot path pays one
attribute check then; several interceptors are folded into one callable when installed.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING

from ._names import qualified_name

if TYPE_CHECKING:
    from ._bus import EventBus
    from ._event import Event

__all__ = ["Interception", "Interceptor"]

#: ``fn(event) -> bool``: True swallows the event (no listener runs); False lets it through.
Interceptor = Callable[["Event"], bool]


class Interception:
    """One ``with bus.intercept(fn):`` block; entered once, left in any order."""

    __slots__ = ("_bus", "_entered", "interceptor")

    def __init__(self, bus: EventBus, interceptor: Interceptor) -> None:
        if not callable(interceptor):
            raise TypeError(
                f"bus.intercept() takes a callable fn(event) -> bool, got {interceptor!r}"
            )
        self._bus = bus
        self.interceptor = interceptor
        self._entered = False

    def __repr__(self) -> str:
        return f"<Interception {qualified_name(self.interceptor)} on {self._bus.name}>"

    def __enter__(self) -> None:
        if self._entered:
            raise RuntimeError(
                f"{self!r} was entered already; call bus.intercept(fn) again for another block"
            )
        self._entered = True
        self._bus._interceptions.append(self)
        _install(self._bus)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        installed = self._bus._interceptions
        # Identity, not ==: the same fn may be installed by two blocks. Absent when a test
        # fixture already put the bus's state back; then there is nothing to undo.
        for i, interception in enumerate(installed):
            if interception is self:
                del installed[i]
                _install(self._bus)
                return


def _install(bus: EventBus) -> None:
    """Fold the installed interceptors, innermost first, into the one callable dispatch reads."""
    chain = tuple(interception.interceptor for interception in reversed(bus._interceptions))
    if not chain:
        bus._intercept = None
    elif len(chain) == 1:
        bus._intercept = chain[0]  # no wrapper: one call, as a single fake always cost
    else:

        def chained(event: Event) -> bool:
            return any(interceptor(event) for interceptor in chain)

        bus._intercept = chained
