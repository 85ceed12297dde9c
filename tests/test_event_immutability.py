"""Issue 10, defect 10: "frozen, so every listener sees the same facts" holds for containers.

One event instance is shared by every listener and the caller, so a list, dict or set
value one listener changed used to be what the next one saw. Such values are now read-only
subclasses of list/dict/set (nested too), refusing mutation with a TypeError naming the
event's field, while isinstance, equality, JSON and pydantic round trips work as before.
"""

from __future__ import annotations

import copy
import json
import pickle
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field

from eventbus import Event, EventBus

pytestmark = pytest.mark.anyio


class Order(Event):
    items: list[str]
    totals: dict[str, list[int]] = Field(default_factory=dict)
    tags: set[str] = Field(default_factory=set)
    lines: Sequence[list[int]] = ()
    meta: Mapping[str, Any] = Field(default_factory=dict)
    extra: Any = None
    n: int = 0


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)
    city: str


def make_order() -> Order:
    return Order(
        items=["a"],
        totals={"x": [1]},
        tags={"t"},
        lines=[[1, 2]],
        meta={"k": [3]},
        extra={"deep": [{"deeper": [4]}]},
    )


MUTATIONS = {
    "items.append": lambda o: o.items.append("b"),
    "items[0]=": lambda o: o.items.__setitem__(0, "z"),
    "items+=": lambda o: o.items.__iadd__(["c"]),
    "items.sort": lambda o: o.items.sort(),
    "totals[k]=": lambda o: o.totals.__setitem__("y", [2]),
    "totals.update": lambda o: o.totals.update(y=[2]),
    "totals[x].append": lambda o: o.totals["x"].append(2),
    "tags.add": lambda o: o.tags.add("u"),
    "tags|=": lambda o: o.tags.__ior__({"u"}),
    "lines[0].append": lambda o: o.lines[0].append(3),
    "meta[k].append": lambda o: o.meta["k"].append(5),
    "extra nested": lambda o: o.extra["deep"][0]["deeper"].append(5),
}


@pytest.mark.parametrize("mutate", MUTATIONS.values(), ids=MUTATIONS.keys())
def test_container_values_refuse_mutation_naming_the_field(mutate: Any) -> None:
    order = make_order()
    before = order.model_dump()
    with pytest.raises(TypeError, match=r"Order\.\w+ is read-only: events are frozen"):
        mutate(order)
    assert order.model_dump() == before


async def test_one_listeners_append_is_not_seen_by_the_next_or_the_caller(
    anyio_backend: str,
) -> None:
    seen: list[list[str]] = []
    errors: list[BaseException] = []

    async def appender(event: Order) -> None:
        try:
            event.items.append("from appender")
        except TypeError as exc:
            errors.append(exc)

    async def reader(event: Order) -> None:
        seen.append(list(event.items))

    bus = EventBus({Order: [appender, reader]})
    order = Order(items=["a"])
    await bus.dispatch_now(order)
    async with bus:
        await bus.dispatch(order)
        await bus.join()
    assert seen == [["a"], ["a"]]
    assert order.items == ["a"]
    assert len(errors) == 2


def test_values_still_behave_as_list_dict_and_set() -> None:
    order = make_order()
    assert isinstance(order.items, list) and order.items == ["a"]
    assert isinstance(order.totals, dict) and order.totals == {"x": [1]}
    assert isinstance(order.tags, set) and order.tags == {"t"}
    added = order.items + ["b"]  # noqa: RUF005 - the operator itself is under test
    assert added == ["a", "b"] and type(added) is list  # non-mutating: a plain list
    assert json.loads(json.dumps(order.items)) == ["a"]
    dumped = order.model_dump()
    assert dumped["items"] == ["a"] and type(dumped["items"]) is list
    assert Order.model_validate_json(order.model_dump_json()) == order
    assert Order.model_validate(dumped) == order
    assert pickle.loads(pickle.dumps(order)) == order
    assert copy.deepcopy(order) == order
    assert copy.copy(order.items) == ["a"]


def test_every_construction_path_freezes() -> None:
    order = make_order()
    paths = {
        "init": Order(items=["a"]),
        "default": Order(items=[]),
        "model_validate": Order.model_validate({"items": ["a"]}),
        "model_validate_json": Order.model_validate_json('{"items": ["a"]}'),
        "model_copy(update)": order.model_copy(update={"items": ["b"], "tags": {"u"}}),
        "model_copy(deep)": order.model_copy(deep=True),
        "model_construct": Order.model_construct(items=["a"], tags={"u"}),
        "deepcopy": copy.deepcopy(order),
        "pickle": pickle.loads(pickle.dumps(order)),
    }
    for path, event in paths.items():
        with pytest.raises(TypeError, match="read-only"):
            event.items.append("x")
        with pytest.raises(TypeError, match="read-only"):
            event.tags.add("x")
        assert path and event.n == 0


def test_a_subclass_keeps_and_extends_the_frozen_fields() -> None:
    class BigOrder(Order):
        more: list[int] = Field(default_factory=list)

    big = BigOrder(items=["a"], more=[1])
    for value in (big.items, big.more):
        with pytest.raises(TypeError, match=r"(Big)?Order\.(items|more) is read-only"):
            value.append(1)


def test_a_mutable_nested_model_is_refused_at_class_creation() -> None:
    class Address(BaseModel):
        city: str

    with pytest.raises(TypeError, match=r"Moved\.to: \S*Address is a mutable pydantic model"):

        class Moved(Event):
            to: Address

    with pytest.raises(TypeError, match="frozen=True"):

        class MovedMany(Event):
            stops: list[Address | None]

    class MovedFrozen(Event):  # frozen models and events are fine
        to: Frozen
        via: list[Order] = Field(default_factory=list)

    assert MovedFrozen(to=Frozen(city="x")).to.city == "x"


def test_events_of_plain_fields_get_no_validator() -> None:
    class Plain(Event):
        user_id: int
        name: str
        score: float

    assert Plain.__eventbus_frozen__ == frozenset()
    assert Order.__eventbus_frozen__ == {"items", "totals", "tags", "lines", "meta", "extra"}
