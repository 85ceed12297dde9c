"""Requirement 6: a typed store on contextvars that follows events into their listeners."""

from __future__ import annotations

import contextvars
import uuid
from contextvars import ContextVar

import anyio
import pytest

from eventbus import Event, EventBus, EventListener, context, define_key

pytestmark = pytest.mark.anyio

UserId = define_key[str]("ctx_test_user_id")
TenantId = define_key[int]("ctx_test_tenant_id")
trace: ContextVar[str] = ContextVar("ctx_test_trace", default="none")


class Pinged(Event):
    pass


async def test_define_key_gives_a_named_key() -> None:
    assert UserId.name == "ctx_test_user_id"
    assert "ctx_test_user_id" in repr(UserId)
    assert define_key("ctx_test_user_id") is UserId  # same name, same slot
    defined = context.keys()
    assert UserId in defined


async def test_a_key_needs_a_non_empty_name() -> None:
    with pytest.raises(TypeError, match="non-empty str"):
        define_key("")
    with pytest.raises(TypeError, match="non-empty str"):
        define_key(42)  # type: ignore[arg-type]


async def test_set_and_get() -> None:
    assert context.get(UserId) is None
    assert context.get(UserId, "anonymous") == "anonymous"
    context.set(UserId, "u1")
    context.set(TenantId, 7)
    assert context.get(UserId) == "u1"
    assert context.get(TenantId) == 7
    assert context.get(UserId, "anonymous") == "u1"


async def test_string_keys_name_the_same_slot() -> None:
    context.set("ctx_test_user_id", "by-name")
    assert context.get(UserId) == "by-name"
    context.set(UserId, "by-key")
    assert context.get("ctx_test_user_id") == "by-key"
    context.set("ctx_test_adhoc", 3)
    assert context.get("ctx_test_adhoc") == 3


async def test_keys_must_be_keys_or_strings() -> None:
    with pytest.raises(TypeError, match="ContextKey or str"):
        context.get(3)  # type: ignore[call-overload]


async def test_snapshot_holds_the_set_keys_only() -> None:
    define_key("ctx_test_never_set")
    context.set(UserId, "u1")
    snap = context.snapshot()
    assert snap["ctx_test_user_id"] == "u1"
    assert "ctx_test_never_set" not in snap
    assert "ctx_test_tenant_id" not in snap


async def test_install_restores_a_snapshot_elsewhere() -> None:
    context.set(UserId, "u1")
    context.set(TenantId, 9)
    snap = context.snapshot()

    def elsewhere() -> tuple[str | None, int | None, dict[str, object]]:
        assert context.get(UserId) is None  # a fresh context starts empty
        context.install(snap)
        return context.get(UserId), context.get(TenantId), context.snapshot()

    user, tenant, again = contextvars.Context().run(elsewhere)
    assert (user, tenant) == ("u1", 9)
    assert again == snap


async def test_install_of_an_unknown_name_ignores_it() -> None:
    # Names from the wire are never interned (issue 10): only defined keys are set.
    name = f"ctx_test_from_the_wire_{uuid.uuid4().hex}"
    context.set(UserId, "before")

    def elsewhere() -> tuple[list[str], str | None]:
        ignored = context.install({name: "x", UserId.name: "u9"})
        return ignored, context.get(UserId)

    ignored, user = contextvars.Context().run(elsewhere)
    assert ignored == [name]
    assert user == "u9"
    defined = context.keys()
    assert name not in {key.name for key in defined}


async def test_every_kind_of_listener_sees_the_callers_context() -> None:
    seen: list[tuple[str, str | None, str]] = []

    class AsyncClass(EventListener):
        async def handle(self, event: Pinged) -> None:
            seen.append(("async class", context.get(UserId), trace.get()))

    class SyncClass(EventListener):
        def handle(self, event: Pinged) -> None:
            seen.append(("sync class", context.get(UserId), trace.get()))

    async def async_fn(event: Pinged) -> None:
        await anyio.lowlevel.checkpoint()
        seen.append(("async fn", context.get(UserId), trace.get()))

    def sync_fn(event: Pinged) -> None:
        seen.append(("sync fn", context.get(UserId), trace.get()))

    bus = EventBus({Pinged: [AsyncClass, SyncClass, async_fn, sync_fn]})
    context.set(UserId, "u1")
    trace.set("t-1")
    with anyio.fail_after(5):
        await bus.dispatch_now(Pinged())
    assert seen == [
        ("async class", "u1", "t-1"),
        ("sync class", "u1", "t-1"),
        ("async fn", "u1", "t-1"),
        ("sync fn", "u1", "t-1"),
    ]


async def test_a_snapshot_inside_a_listener_is_the_callers() -> None:
    snaps: list[dict[str, object]] = []

    async def take(event: Pinged) -> None:
        snaps.append(context.snapshot())

    context.set(UserId, "u1")
    await EventBus({Pinged: [take]}).dispatch_now(Pinged())
    assert snaps == [context.snapshot()]
    assert snaps[0]["ctx_test_user_id"] == "u1"


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
async def test_what_a_listener_sets_stays_its_own(sync: bool) -> None:
    """Two listeners and the caller: no one sees another's writes."""
    seen: dict[str, tuple[str | None, str]] = {}

    async def writer_async(event: Pinged) -> None:
        context.set(UserId, "set by writer")
        trace.set("writer")
        await anyio.lowlevel.checkpoint()  # its own writes survive its own suspensions
        seen["writer"] = (context.get(UserId), trace.get())

    def writer_sync(event: Pinged) -> None:
        context.set(UserId, "set by writer")
        trace.set("writer")
        seen["writer"] = (context.get(UserId), trace.get())

    async def reader(event: Pinged) -> None:
        seen["reader"] = (context.get(UserId), trace.get())
        context.set(UserId, "set by reader")
        trace.set("reader")

    bus = EventBus({Pinged: [writer_sync if sync else writer_async, reader]})
    context.set(UserId, "caller")
    trace.set("caller")
    await bus.dispatch_now(Pinged())
    assert seen["writer"] == ("set by writer", "writer")
    assert seen["reader"] == ("caller", "caller")  # not the writer's values
    assert (context.get(UserId), trace.get()) == ("caller", "caller")  # nor the caller
    await bus.dispatch_now(Pinged())  # and nothing carries over to the next dispatch
    assert seen["reader"] == ("caller", "caller")


async def test_a_failing_listener_leaks_nothing_either() -> None:
    async def breaks(event: Pinged) -> None:
        context.set(UserId, "leak?")
        raise RuntimeError("after setting")

    with pytest.raises(ExceptionGroup):
        await EventBus({Pinged: [breaks]}).dispatch_now(Pinged())
    assert context.get(UserId) is None
