"""The fake bus and its assertions (eventbus.testing), and bus.assert_listening."""

from __future__ import annotations

from typing import assert_type

import anyio
import pytest

import eventbus
import eventbus.testing
from eventbus import Event, EventBus, EventListener
from eventbus.testing import EventFake

pytestmark = pytest.mark.anyio


class Tagged:
    """A mixin: a non-Event class in the MRO."""


class KitChat(Event):
    chat_id: int


class KitChatOpened(KitChat, Tagged):
    title: str = ""


class KitChatRenamed(KitChat):
    title: str


class KitSignup(Event):
    email: str


class KitUnrelated(Event):
    pass


class Calls:
    """Listeners that record what they handled, so a test can see what ran."""

    def __init__(self) -> None:
        self.handled: list[Event] = []

    async def __call__(self, event: Event) -> None:
        self.handled.append(event)


def make_bus(driver: str = "sync") -> tuple[EventBus, Calls]:
    bus = EventBus(driver=driver)
    calls = Calls()
    bus.register({Event: [calls]})
    return bus, calls


async def record(*events: Event) -> EventFake:
    """A fake (already left) that recorded ``events`` through dispatch_now."""
    bus, _ = make_bus()
    with bus.fake() as fake:
        for event in events:
            await bus.dispatch_now(event)
    return fake


# -- faking ---------------------------------------------------------------------------------


async def test_fake_records_dispatch_and_dispatch_now_and_runs_no_listener() -> None:
    bus, calls = make_bus(driver="async_farm")  # farm not running: a real dispatch would raise
    first, second = KitChatOpened(chat_id=1), KitSignup(email="a@b.c")
    with bus.fake() as fake:
        await bus.dispatch(first)
        await bus.dispatch_now(second)
    assert fake.events == [first, second]
    assert calls.handled == []
    assert bus.stats.dispatched == 2


async def test_fake_records_events_nobody_listens_to() -> None:
    bus = EventBus(driver="sync")
    with bus.fake() as fake:
        await bus.dispatch_now(KitUnrelated())
    fake.assert_dispatched(KitUnrelated)


async def test_leaving_the_fake_restores_the_bus() -> None:
    bus, calls = make_bus()
    with bus.fake() as fake:
        await bus.dispatch_now(KitSignup(email="during"))
    after = KitSignup(email="after")
    await bus.dispatch(after)
    await bus.dispatch_now(after)
    assert calls.handled == [after, after]
    assert [e.email for e in fake.dispatched(KitSignup)] == ["during"]


async def test_leaving_the_fake_by_an_exception_restores_the_bus() -> None:
    bus, calls = make_bus()
    with pytest.raises(ZeroDivisionError), bus.fake():
        1 / 0  # noqa: B018
    await bus.dispatch_now(KitSignup(email="x"))
    assert calls.handled == [KitSignup(email="x")]


async def test_fake_while_the_farm_runs_fakes_only_the_faked_types() -> None:
    ran = anyio.Event()
    handled: list[Event] = []

    async def listener(event: Event) -> None:
        handled.append(event)
        ran.set()

    bus = EventBus({Event: [listener]})  # the async farm

    with anyio.fail_after(5):
        async with bus:
            with bus.fake(only=[KitChat]) as fake:
                await bus.dispatch(KitChatOpened(chat_id=1))
                await bus.dispatch(KitSignup(email="real"))
                await ran.wait()
                await bus.join()
            await bus.dispatch(KitChatOpened(chat_id=2))  # after the fake: runs
            await bus.join()
    assert [type(e) for e in handled] == [KitSignup, KitChatOpened]
    assert fake.dispatched(KitChat) == [KitChatOpened(chat_id=1)]


@pytest.mark.parametrize(
    ("option", "faked", "ran"),
    [
        ("only", [KitChatOpened, KitChatRenamed], [KitSignup]),
        ("exclude", [KitSignup], [KitChatOpened, KitChatRenamed]),
    ],
)
async def test_only_and_exclude_match_those_types_and_their_subclasses(
    option: str, faked: list[type[Event]], ran: list[type[Event]]
) -> None:
    bus, calls = make_bus()
    with bus.fake(**{option: [KitChat]}) as fake:
        await bus.dispatch_now(KitChatOpened(chat_id=1))
        await bus.dispatch(KitChatRenamed(chat_id=2, title="t"))
        await bus.dispatch_now(KitSignup(email="e"))
    assert [type(e) for e in fake.events] == faked
    assert [type(e) for e in calls.handled] == ran


async def test_only_accepts_a_single_class_and_mixins() -> None:
    bus, calls = make_bus()
    with bus.fake(only=Tagged) as fake:
        await bus.dispatch_now(KitChatOpened(chat_id=1))
        await bus.dispatch_now(KitChatRenamed(chat_id=1, title="t"))
    assert fake.dispatched(Tagged) == [KitChatOpened(chat_id=1)]
    assert calls.handled == [KitChatRenamed(chat_id=1, title="t")]


async def test_only_and_exclude_together() -> None:
    bus, calls = make_bus()
    with bus.fake(only=[KitChat], exclude=[KitChatRenamed]) as fake:
        await bus.dispatch_now(KitChatOpened(chat_id=1))
        await bus.dispatch_now(KitChatRenamed(chat_id=1, title="t"))
    assert [type(e) for e in fake.events] == [KitChatOpened]
    assert [type(e) for e in calls.handled] == [KitChatRenamed]


def test_only_with_something_else_than_classes_is_a_clear_error() -> None:
    bus = EventBus(driver="sync")
    with pytest.raises(TypeError, match=r"only=\[KitSignup\]"):
        bus.fake(only=[KitSignup(email="e")])  # type: ignore[list-item]


async def test_nested_fakes_hand_what_they_let_through_to_the_outer_one() -> None:
    bus, calls = make_bus()
    with bus.fake() as outer:
        with bus.fake(only=[KitChat]) as inner:
            await bus.dispatch_now(KitChatOpened(chat_id=1))
            await bus.dispatch_now(KitSignup(email="e"))
        await bus.dispatch_now(KitChatOpened(chat_id=2))
    await bus.dispatch_now(KitChatOpened(chat_id=3))
    assert inner.events == [KitChatOpened(chat_id=1)]
    assert outer.events == [KitSignup(email="e"), KitChatOpened(chat_id=2)]
    assert calls.handled == [KitChatOpened(chat_id=3)]


async def test_fakes_left_out_of_order_still_unlink() -> None:
    bus, calls = make_bus()
    outer, inner = bus.fake(), bus.fake(only=[KitChat])
    outer.__enter__()
    inner.__enter__()
    outer.__exit__(None, None, None)
    await bus.dispatch_now(KitSignup(email="runs"))  # inner lets it through; outer is gone
    inner.__exit__(None, None, None)
    await bus.dispatch_now(KitChatOpened(chat_id=1))
    assert outer.events == [] and inner.events == []
    assert [type(e) for e in calls.handled] == [KitSignup, KitChatOpened]


def test_a_fake_cannot_be_entered_twice() -> None:
    bus = EventBus(driver="sync")
    with bus.fake() as fake, pytest.raises(RuntimeError, match="already active"):
        fake.__enter__()


async def test_testing_fake_fakes_the_default_bus() -> None:
    calls = Calls()
    eventbus.get_bus().register({KitSignup: [calls]})
    with eventbus.testing.fake(exclude=KitChat) as fake:
        assert fake.bus is eventbus.get_bus()
        await eventbus.dispatch_now(KitSignup(email="e"))
        await eventbus.dispatch_now(KitChatOpened(chat_id=1))
    fake.assert_dispatched_once(KitSignup)
    fake.assert_not_dispatched(KitChat)
    assert calls.handled == []


async def test_dispatching_a_non_event_still_fails_while_faked() -> None:
    bus = EventBus(driver="sync")
    with bus.fake() as fake, pytest.raises(TypeError, match="dispatch takes an Event"):
        await bus.dispatch_now(KitSignup)  # type: ignore[arg-type]
    assert fake.events == []


async def test_faked_dispatch_inside_a_failed_defer_block_records_nothing() -> None:
    bus, _ = make_bus()
    with bus.fake() as fake:
        with pytest.raises(ZeroDivisionError):
            async with bus.defer():
                await bus.dispatch(KitSignup(email="rolled back"))
                1 / 0  # noqa: B018
        fake.assert_nothing_dispatched()
        async with bus.defer():
            await bus.dispatch(KitSignup(email="committed"))
            fake.assert_nothing_dispatched()  # held until the block succeeds
    fake.assert_dispatched_once(KitSignup, where=lambda e: e.email == "committed")


async def test_clear_forgets_what_was_recorded() -> None:
    fake = await record(KitSignup(email="setup"))
    assert fake.events == [KitSignup(email="setup")]
    fake.clear()
    fake.assert_nothing_dispatched()


async def test_dispatched_is_typed_and_filters_by_class_mro_and_where() -> None:
    opened, renamed = KitChatOpened(chat_id=1, title="a"), KitChatRenamed(chat_id=2, title="b")
    fake = await record(opened, KitSignup(email="e"), renamed)
    chats = fake.dispatched(KitChat)
    assert_type(chats, list[KitChat])
    assert chats == [opened, renamed]
    assert fake.dispatched(KitChatRenamed) == [renamed]
    assert fake.dispatched(Tagged) == [opened]
    assert fake.dispatched(KitChat, where=lambda e: e.chat_id == 2) == [renamed]
    assert fake.dispatched(KitUnrelated) == []


# -- assertions: pass and fail paths ----------------------------------------------------------


async def test_assert_dispatched_passes() -> None:
    fake = await record(KitChatOpened(chat_id=1), KitChatOpened(chat_id=2))
    fake.assert_dispatched(KitChatOpened)
    fake.assert_dispatched(KitChat)  # a subclass event matches its base
    fake.assert_dispatched(Tagged)
    fake.assert_dispatched(KitChatOpened, where=lambda e: e.chat_id == 2)
    fake.assert_dispatched(KitChatOpened, times=2)
    fake.assert_dispatched(KitChatOpened, where=lambda e: e.chat_id > 1, times=1)
    fake.assert_dispatched(KitSignup, times=0)


async def test_assert_dispatched_fails_when_nothing_was_dispatched() -> None:
    fake = await record()
    with pytest.raises(AssertionError) as info:
        fake.assert_dispatched(KitSignup)
    message = str(info.value)
    assert message.startswith("expected KitSignup to be dispatched, but it was not.")
    assert "nothing was dispatched" in message


async def test_assert_dispatched_fails_showing_types_counts_and_closest_candidates() -> None:
    fake = await record(
        KitUnrelated(),
        KitChatOpened(chat_id=7, title="hello"),
        KitChatOpened(chat_id=8),
        KitSignup(email="a@b.c"),
    )
    with pytest.raises(AssertionError) as info:
        fake.assert_dispatched(KitChatRenamed)
    message = str(info.value)
    assert "expected KitChatRenamed to be dispatched, but it was not." in message
    assert "(4 events)" in message
    assert "KitChatOpened ('kit_chat_opened') x2" in message
    assert "KitSignup ('kit_signup') x1" in message
    assert "KitUnrelated ('kit_unrelated') x1" in message
    candidates = message.split("closest candidates:\n", 1)[1].splitlines()
    # Related by the MRO (a KitChat) first, with their field values.
    assert candidates[0].strip() == "KitChatOpened(chat_id=7, title='hello')"
    assert candidates[1].strip() == "KitChatOpened(chat_id=8, title='')"


async def test_assert_dispatched_where_fails_showing_the_rejected_events() -> None:
    fake = await record(KitSignup(email="a@b.c"), KitSignup(email="x@y.z"))
    with pytest.raises(AssertionError) as info:
        fake.assert_dispatched(KitSignup, where=lambda e: e.email == "nobody")
    message = str(info.value)
    assert "expected KitSignup matching <lambda at test_testing_fake.py:" in message
    assert "closest candidates (KitSignup events that <lambda at" in message
    assert "KitSignup(email='a@b.c')" in message
    assert "KitSignup(email='x@y.z')" in message


async def test_assert_dispatched_where_names_a_named_predicate() -> None:
    def is_nobody(event: KitSignup) -> bool:
        return event.email == "nobody"

    fake = await record(KitSignup(email="a@b.c"))
    with pytest.raises(AssertionError, match=r"matching .*is_nobody to be dispatched"):
        fake.assert_dispatched(KitSignup, where=is_nobody)


async def test_assert_dispatched_times_fails_showing_the_count_and_the_events() -> None:
    fake = await record(KitChatOpened(chat_id=1), KitChatOpened(chat_id=2), KitSignup(email="e"))
    with pytest.raises(AssertionError) as info:
        fake.assert_dispatched(KitChatOpened, times=3)
    message = str(info.value)
    assert "expected KitChatOpened to be dispatched 3 times, but it was dispatched 2 times." in (
        message
    )
    assert "KitChatOpened(chat_id=1, title='')" in message
    assert "KitChatOpened(chat_id=2, title='')" in message
    with pytest.raises(AssertionError, match="dispatched 0 times, but it was dispatched once"):
        fake.assert_dispatched(KitSignup, times=0)


async def test_assert_dispatched_rejects_a_bad_times_or_an_instance() -> None:
    fake = await record(KitSignup(email="e"))
    with pytest.raises(ValueError, match="times must be >= 0"):
        fake.assert_dispatched(KitSignup, times=-1)
    with pytest.raises(TypeError, match="times must be an int"):
        fake.assert_dispatched(KitSignup, times="1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"pass the class: assert_dispatched\(KitSignup"):
        fake.assert_dispatched(KitSignup(email="e"))  # type: ignore[arg-type]


async def test_assert_dispatched_once_passes_and_fails() -> None:
    fake = await record(KitChatOpened(chat_id=1), KitChatOpened(chat_id=2), KitSignup(email="e"))
    fake.assert_dispatched_once(KitSignup)
    fake.assert_dispatched_once(KitChatOpened, where=lambda e: e.chat_id == 2)
    with pytest.raises(AssertionError) as info:
        fake.assert_dispatched_once(KitChatOpened)
    assert "to be dispatched once, but it was dispatched 2 times" in str(info.value)
    with pytest.raises(AssertionError) as info:
        fake.assert_dispatched_once(KitChatRenamed)
    assert "to be dispatched once, but it was dispatched 0 times" in str(info.value)
    assert "KitChatOpened(chat_id=1, title='')" in str(info.value)


async def test_assert_not_dispatched_passes() -> None:
    fake = await record(KitChatOpened(chat_id=1))
    fake.assert_not_dispatched(KitSignup)
    fake.assert_not_dispatched(KitChatRenamed)  # a sibling subclass
    fake.assert_not_dispatched(KitChatOpened, where=lambda e: e.chat_id == 2)


async def test_assert_not_dispatched_fails_showing_what_matched() -> None:
    fake = await record(KitChatOpened(chat_id=1, title="t"), KitSignup(email="e"))
    with pytest.raises(AssertionError) as info:
        fake.assert_not_dispatched(KitChat)
    message = str(info.value)
    assert "expected KitChat not to be dispatched, but it was dispatched once." in message
    assert "recorded KitChat events:\n  KitChatOpened(chat_id=1, title='t')" in message
    assert "KitSignup ('kit_signup') x1" in message
    with pytest.raises(AssertionError, match="matching <lambda at"):
        fake.assert_not_dispatched(KitChatOpened, where=lambda e: e.title == "t")


async def test_assert_nothing_dispatched_passes_and_fails() -> None:
    (await record()).assert_nothing_dispatched()
    fake = await record(KitSignup(email="e"), KitSignup(email="f"), KitUnrelated())
    with pytest.raises(AssertionError) as info:
        fake.assert_nothing_dispatched()
    message = str(info.value)
    assert message.startswith("expected no events to be dispatched, but 3 events were:")
    assert "KitSignup ('kit_signup') x2" in message
    assert "in order:\n  KitSignup(email='e')\n  KitSignup(email='f')\n  KitUnrelated()" in (
        message
    )


async def test_long_failure_messages_are_summarised() -> None:
    fake = await record(*(KitSignup(email=f"user{i}@example.com") for i in range(8)))
    with pytest.raises(AssertionError) as info:
        fake.assert_not_dispatched(KitSignup)
    message = str(info.value)
    assert "KitSignup ('kit_signup') x8" in message
    assert "user4@example.com" in message and "user5@example.com" not in message
    assert "... and 3 more" in message


async def test_asserting_a_type_the_fake_does_not_fake_says_so() -> None:
    bus, _ = make_bus()
    with bus.fake(only=[KitChat]) as fake:
        await bus.dispatch_now(KitSignup(email="ran for real"))
    with pytest.raises(AssertionError) as info:
        fake.assert_dispatched(KitSignup)
    assert "this fake (only=[KitChat]) does not fake KitSignup" in str(info.value)
    assert "nothing was dispatched" in str(info.value)


# -- bus.assert_listening -------------------------------------------------------------------


class KitTitleListener(EventListener):
    async def handle(self, event: KitChat) -> None: ...


class KitWelcomeListener(EventListener):
    async def handle(self, event: KitSignup) -> None: ...


async def kit_on_tagged(event: Tagged) -> None: ...


def listening_bus() -> EventBus:
    return EventBus(
        {KitChat: [KitTitleListener], KitSignup: [KitWelcomeListener], Tagged: [kit_on_tagged]},
        driver="sync",
    )


def test_assert_listening_passes_directly_and_through_the_mro() -> None:
    bus = listening_bus()
    bus.assert_listening(KitChat, KitTitleListener)
    bus.assert_listening(KitChatOpened, KitTitleListener)  # registered on the base
    bus.assert_listening(KitChatOpened, kit_on_tagged)  # registered on a mixin
    bus.assert_listening(KitSignup, KitWelcomeListener)


def test_assert_listening_fails_listing_the_listeners_reached() -> None:
    bus = listening_bus()
    with pytest.raises(AssertionError) as info:
        bus.assert_listening(KitChatOpened, KitWelcomeListener)
    message = str(info.value)
    assert "KitWelcomeListener does not listen to" in message
    assert "KitChatOpened" in message
    reached = message.split("it reaches: ", 1)[1]
    assert reached.index("KitTitleListener") < reached.index("kit_on_tagged")  # MRO order
    # A listener on a subclass does not hear the base.
    with pytest.raises(AssertionError, match=r"does not listen to .*KitChat;"):
        bus.assert_listening(KitChat, kit_on_tagged)
    with pytest.raises(AssertionError, match="it reaches: no listeners"):
        bus.assert_listening(KitUnrelated, KitTitleListener)


def test_assert_listening_works_on_a_faked_bus() -> None:
    bus = listening_bus()
    with bus.fake():
        bus.assert_listening(KitChatOpened, KitTitleListener)
        with pytest.raises(AssertionError, match=r"it reaches: .*KitWelcomeListener"):
            bus.assert_listening(KitSignup, KitTitleListener)


def test_assert_listening_with_an_instance_is_a_clear_error() -> None:
    bus = listening_bus()
    with pytest.raises(TypeError, match=r"pass the class: assert_listening\(KitSignup"):
        bus.assert_listening(KitSignup(email="e"), KitWelcomeListener)  # type: ignore[arg-type]
