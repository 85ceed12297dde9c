"""Events: immutable pydantic models with a stable name."""

from __future__ import annotations

import collections.abc
import re
import typing
from typing import Any, ClassVar, NoReturn, Self

from pydantic import AfterValidator, BaseModel, ConfigDict

__all__ = ["Event", "default_event_name", "snake_case"]

_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")

#: How many Event subclasses were created in this process: a worker that could not resolve
#: an event name rescans the classes only when this moved (a rescan is a full walk).
classes_created = 0


def snake_case(class_name: str) -> str:
    """``NewChatEvent`` -> ``"new_chat_event"``; ``HTTPRequest`` -> ``"http_request"``."""
    return _CAMEL_BOUNDARY.sub("_", class_name).lower()


def default_event_name(class_name: str) -> str:
    """``NewChatEvent`` -> ``"new_chat"``; ``HTTPRequestSeen`` -> ``"http_request_seen"``."""
    snake = snake_case(class_name)
    if snake.endswith("_event") and snake != "_event":
        snake = snake[: -len("_event")]
    return snake


class Event(BaseModel):
    """Something that happened. Frozen, so every listener sees the same facts.

    List, dict and set values (nested too, in any field that can hold them) are stored as
    read-only subclasses of ``list``/``dict``/``set``: they compare, serialize and pass
    ``isinstance`` as usual, and raise :class:`TypeError` on mutation. Nested pydantic
    models must be frozen themselves. Arbitrary field types are allowed (``bson.ObjectId``
    and friends) and stored as given. Each class gets a stable :attr:`event_name` derived
    from its class name; set ``event_name = "..."`` in the class body to choose another.
    The name is what logs, the CLI and the wire format use.
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    event_name: ClassVar[str] = "event"
    #: Fields whose values may hold lists, dicts or sets (found once, at class creation).
    __eventbus_frozen__: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        global classes_created
        classes_created += 1
        super().__pydantic_init_subclass__(**kwargs)
        _freeze_fields(cls)
        if "event_name" not in cls.__dict__:
            cls.event_name = default_event_name(cls.__name__)
        elif not isinstance(cls.__dict__["event_name"], str) or not cls.event_name:
            raise TypeError(
                f"{cls.__qualname__}.event_name must be a non-empty str, "
                f"got {cls.__dict__['event_name']!r}"
            )

    def model_copy(
        self, *, update: collections.abc.Mapping[str, Any] | None = None, deep: bool = False
    ) -> Self:
        """A copy, changed by ``update``; updated container values are frozen like the rest."""
        copied = super().model_copy(update=update, deep=deep)
        if update:
            _freeze_values(copied, self.__eventbus_frozen__.intersection(update))
        return copied

    @classmethod
    def model_construct(cls, _fields_set: set[str] | None = None, **values: Any) -> Self:
        """Unvalidated construction (pydantic's); container values are still frozen."""
        event = super().model_construct(_fields_set, **values)
        _freeze_values(event, cls.__eventbus_frozen__)
        return event


# -- deep immutability -------------------------------------------------------------------


def _refuse(owner: str, example: str) -> NoReturn:
    raise TypeError(
        f"{owner} is read-only: events are frozen so every listener sees the same facts; "
        f"build a new value ({example}) or a changed event with "
        "event.model_copy(update={...})"
    )


class FrozenList(list[Any]):
    """A ``list`` that refuses mutation (an event's list value)."""

    __slots__ = ("_owner",)

    def __init__(self, items: collections.abc.Iterable[Any] = (), owner: str = "this list"):
        super().__init__(items)
        self._owner = owner

    def __reduce__(self) -> tuple[Any, ...]:  # copy, deepcopy, pickle: no mutation needed
        return (type(self), (list(self), self._owner))

    def _mutate(self, *args: Any, **kwargs: Any) -> NoReturn:
        _refuse(self._owner, "e.g. [*old, item]")

    append = extend = insert = pop = remove = clear = sort = reverse = _mutate
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _mutate


class FrozenDict(dict[Any, Any]):
    """A ``dict`` that refuses mutation (an event's dict value)."""

    __slots__ = ("_owner",)

    def __init__(self, items: Any = (), owner: str = "this dict"):
        super().__init__(items)
        self._owner = owner

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (dict(self), self._owner))

    def _mutate(self, *args: Any, **kwargs: Any) -> NoReturn:
        _refuse(self._owner, "e.g. {**old, key: value}")

    pop = popitem = clear = update = setdefault = _mutate
    __setitem__ = __delitem__ = __ior__ = _mutate


class FrozenSet(set[Any]):
    """A ``set`` that refuses mutation (an event's set value)."""

    __slots__ = ("_owner",)

    def __init__(self, items: collections.abc.Iterable[Any] = (), owner: str = "this set"):
        super().__init__(items)
        self._owner = owner

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (set(self), self._owner))

    def _mutate(self, *args: Any, **kwargs: Any) -> NoReturn:
        _refuse(self._owner, "e.g. old | {item}")

    add = discard = remove = pop = clear = update = _mutate
    intersection_update = difference_update = symmetric_difference_update = _mutate
    __ior__ = __iand__ = __isub__ = __ixor__ = _mutate


def freeze(value: Any, owner: str) -> Any:
    """``value`` with every plain list, dict and set in it (nested too) made read-only."""
    kind = type(value)
    if kind is list:
        return FrozenList([freeze(v, owner) for v in value], owner)
    if kind is dict:
        return FrozenDict({k: freeze(v, owner) for k, v in value.items()}, owner)
    if kind is set:
        return FrozenSet(value, owner)  # members are hashable, so not lists/dicts/sets
    if kind is tuple:
        return tuple(freeze(v, owner) for v in value)
    return value


#: Annotation origins whose values can be (or contain) a list, dict or set.
_CONTAINERS: frozenset[Any] = frozenset(
    {
        list,
        dict,
        set,
        tuple,
        object,
        collections.abc.Iterable,
        collections.abc.Collection,
        collections.abc.Sequence,
        collections.abc.MutableSequence,
        collections.abc.Mapping,
        collections.abc.MutableMapping,
        collections.abc.Set,
        collections.abc.MutableSet,
    }
)


def _may_hold_containers(annotation: Any) -> bool:
    if annotation is Any or annotation in _CONTAINERS:
        return True
    if typing.get_origin(annotation) in _CONTAINERS:
        return True
    return any(_may_hold_containers(arg) for arg in typing.get_args(annotation))


def _mutable_model(annotation: Any) -> type[BaseModel] | None:
    if (
        isinstance(annotation, type)
        and issubclass(annotation, BaseModel)
        and not annotation.model_config.get("frozen", False)
    ):
        return annotation
    for arg in typing.get_args(annotation):
        found = _mutable_model(arg)
        if found is not None:
            return found
    return None


def _freezer(owner: str, annotation: Any) -> Any:
    # `list[str]`, `dict[str, int]`, `set[T]`: members cannot hold containers, so freezing
    # the value itself is enough (the common case; no walk over the members).
    origin = typing.get_origin(annotation)
    shallow: Any = {list: FrozenList, dict: FrozenDict, set: FrozenSet}.get(origin)
    if shallow is not None and not any(
        _may_hold_containers(arg) for arg in typing.get_args(annotation)
    ):

        def freeze_field(value: Any) -> Any:
            return shallow(value, owner) if type(value) is origin else freeze(value, owner)

    else:

        def freeze_field(value: Any) -> Any:
            return freeze(value, owner)

    freeze_field._eventbus_freezer = True  # type: ignore[attr-defined]
    return freeze_field


def _freeze_fields(cls: type[Event]) -> None:
    """Once per class: refuse mutable nested models; freeze fields that can hold containers.

    Only fields whose annotation can hold a list, dict or set get a validator, so events
    of plain fields (str, int, datetime, ...) construct exactly as fast as before.
    """
    frozen: set[str] = set()
    rebuild = False
    for name, field in cls.model_fields.items():
        model = _mutable_model(field.annotation)
        if model is not None:
            raise TypeError(
                f"{cls.__qualname__}.{name}: {model.__qualname__} is a mutable pydantic "
                "model, so one listener's change would be seen by the next; give it "
                "`model_config = ConfigDict(frozen=True)` (or make it an eventbus.Event)"
            )
        if not _may_hold_containers(field.annotation):
            continue
        frozen.add(name)
        if not any(
            getattr(getattr(m, "func", None), "_eventbus_freezer", False) for m in field.metadata
        ):
            field.metadata.append(
                AfterValidator(_freezer(f"{cls.__qualname__}.{name}", field.annotation))
            )
            field.validate_default = True  # a default list is frozen too
            rebuild = True
    cls.__eventbus_frozen__ = frozenset(frozen)
    if rebuild:
        cls.model_rebuild(force=True)


def _freeze_values(event: Event, names: collections.abc.Iterable[str]) -> None:
    values = event.__dict__
    for name in names:
        if name in values:
            values[name] = freeze(values[name], f"{type(event).__qualname__}.{name}")
