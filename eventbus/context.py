"""A typed store on contextvars for what every listener should know about its caller.

Define a key once, set it where the request starts, read it in any listener::

    from eventbus import context, define_key

    UserId = define_key[str]("user_id")
    context.set(UserId, "u1")
    context.get(UserId)          # "u1", also inside listeners of events dispatched here

Listeners run in a copy of the dispatching caller's context, so these values (and any other
``ContextVar``) follow the event; what a listener sets stays its own. :func:`snapshot` and
:func:`install` turn the defined keys into a plain dict and back, which is how the context
crosses a process boundary (``install`` sets only keys defined in the receiving process).
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any, Generic, TypeVar, overload

__all__ = ["ContextKey", "define_key", "get", "install", "keys", "set", "snapshot"]

T = TypeVar("T")
D = TypeVar("D")

_MISSING: Any = object()
_keys: dict[str, ContextKey[Any]] = {}


class ContextKey(Generic[T]):
    """A named, typed slot in the context. Defining the same name twice gives the same slot."""

    __slots__ = ("_var", "name")

    name: str
    _var: ContextVar[T]

    def __new__(cls, name: str) -> ContextKey[T]:
        if not isinstance(name, str) or not name:
            raise TypeError(f"a context key needs a non-empty str name, got {name!r}")
        existing = _keys.get(name)
        if existing is not None:
            return existing
        key = super().__new__(cls)
        key.name = name
        key._var = ContextVar(f"eventbus.context.{name}", default=_MISSING)
        _keys[name] = key
        return key

    def __repr__(self) -> str:
        return f"ContextKey({self.name!r})"


#: ``UserId = define_key[str]("user_id")`` reads as what it does.
define_key = ContextKey


def _key(key: ContextKey[T] | str) -> ContextKey[T]:
    if isinstance(key, ContextKey):
        return key
    if isinstance(key, str):
        return ContextKey(key)
    raise TypeError(f"context keys are ContextKey or str, got {key!r}")


def set(key: ContextKey[T] | str, value: T) -> None:
    """Set ``key`` for the current context and everything dispatched from it."""
    _key(key)._var.set(value)


@overload
def get(key: ContextKey[T] | str) -> T | None: ...
@overload
def get(key: ContextKey[T] | str, default: D) -> T | D: ...
def get(key: ContextKey[T] | str, default: Any = None) -> Any:
    """The current value of ``key``, or ``default`` when it was never set here."""
    value = _key(key)._var.get()
    return default if value is _MISSING else value


def keys() -> list[ContextKey[Any]]:
    """Every key defined so far in this process."""
    return list(_keys.values())


def snapshot() -> dict[str, Any]:
    """The defined keys that are set in the current context, as ``{name: value}``."""
    out: dict[str, Any] = {}
    for name, key in _keys.items():
        value = key._var.get()
        if value is not _MISSING:
            out[name] = value
    return out


def install(values: dict[str, Any]) -> list[str]:
    """Set the ``{name: value}`` of a :func:`snapshot` whose keys are defined here.

    Returns the names it ignored. A name this process never defined is not created: the
    values come from another process (a queued message), and every key made here would
    stay in memory for good, so a stream of distinct names would grow the process forever.
    Define the keys a worker should see (``define_key``) in the worker's code.
    """
    ignored: list[str] = []
    for name, value in values.items():
        key = _keys.get(name)
        if key is None:
            ignored.append(name)
        else:
            key._var.set(value)
    return ignored
