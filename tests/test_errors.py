"""Requirement 8: bad input fails early, names the offending object and says what to do."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fixtures_core import Modules
from pydantic import BaseModel

import eventbus
from eventbus import Event, EventBus, EventListener, ProviderNotFound, RegistrationError

pytestmark = pytest.mark.anyio


class Signup(Event):
    pass


class Good(EventListener):
    async def handle(self, event: Signup) -> None: ...


class NotAnEvent(BaseModel):
    pass


@pytest.fixture
def modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Modules]:
    made = Modules(tmp_path, monkeypatch)
    yield made
    made.forget()


def test_registration_error_is_a_type_error() -> None:
    assert issubclass(RegistrationError, TypeError)
    assert issubclass(ProviderNotFound, RegistrationError)
    assert issubclass(ProviderNotFound, ModuleNotFoundError)


# -- event keys ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (42, "42 is not an event class"),
        ("signup", "'signup' is not an event class"),
        (Signup(), "is not an event class"),
        (int, "builtins.int is not an Event subclass"),
        (NotAnEvent, "NotAnEvent is not an Event subclass"),
        (Good, "Good is a listener, not an event"),
    ],
)
def test_a_key_that_is_not_an_event(key: Any, message: str) -> None:
    with pytest.raises(RegistrationError, match=re.escape(message)):
        EventBus({key: [Good]})
    with pytest.raises(RegistrationError, match=re.escape(message)):
        EventBus().listen(key, tries=1)


def test_events_must_be_a_mapping() -> None:
    with pytest.raises(RegistrationError, match="must be a dict of event class -> list"):
        EventBus([Signup, Good])  # type: ignore[arg-type]


@pytest.mark.parametrize("listeners", [Good, "Good", None, 3])
def test_the_listeners_must_be_a_list(listeners: Any) -> None:
    with pytest.raises(RegistrationError, match=r"listeners for .*Signup must be a list") as e:
        EventBus({Signup: listeners})
    assert "write {Signup: [" in str(e.value)


# -- listeners -------------------------------------------------------------------------


def test_a_listener_class_without_handle() -> None:
    class Forgetful(EventListener):
        async def hande(self, event: Signup) -> None: ...

    class Plain:
        pass

    for bad in (Forgetful, Plain):
        with pytest.raises(RegistrationError, match=rf"{bad.__name__} has no handle method"):
            EventBus({Signup: [bad]})
    with pytest.raises(RegistrationError, match="Forgetful has no handle method"):
        EventBus().listen(Forgetful)  # bare: not mistaken for a key
    with pytest.raises(RegistrationError, match="Forgetful has no handle method"):
        EventBus().listen(Signup)(Forgetful)


def test_handle_must_be_a_plain_method() -> None:
    class Static(EventListener):
        @staticmethod
        async def handle(event: Signup) -> None: ...  # type: ignore[override]

    with pytest.raises(RegistrationError, match=r"Static\.handle must be a plain method"):
        EventBus({Signup: [Static]})


def test_a_listener_whose_init_needs_arguments() -> None:
    class NeedsDb(EventListener):
        def __init__(self, db: object, retries: int = 3) -> None:
            self.db = db

        async def handle(self, event: Signup) -> None: ...

    with pytest.raises(RegistrationError, match=r"NeedsDb needs arguments \['db'\]") as e:
        EventBus({Signup: [NeedsDb]})
    assert "__init__ must take no arguments" in str(e.value)


def test_optional_init_arguments_are_fine() -> None:
    class Optional(EventListener):
        def __init__(self, retries: int = 3, *args: Any, **kwargs: Any) -> None:
            self.retries = retries

        async def handle(self, event: Signup) -> None: ...

    assert EventBus({Signup: [Optional]}).listeners_for(Signup) == [Optional]


@pytest.mark.parametrize("bad", [42, "tests.listeners.Good", Good(), None])
def test_neither_class_nor_function(bad: Any) -> None:
    with pytest.raises(RegistrationError, match="is neither a listener class nor a function"):
        EventBus({Signup: [bad]})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tries": 0}, "tries must be an int >= 1, got 0"),
        ({"tries": True}, "tries must be an int >= 1, got True"),
        ({"backoff": -1}, "backoff delays must be >= 0"),
        ({"backoff": []}, "backoff must be seconds or a non-empty sequence"),
        ({"timeout": 0}, "timeout must be > 0 seconds or None, got 0"),
    ],
)
def test_a_bad_policy(kwargs: dict[str, Any], message: str) -> None:
    async def on_signup(event: Signup) -> None: ...

    with pytest.raises(RegistrationError, match=re.escape(message)) as e:
        EventBus().listen(Signup, **kwargs)(on_signup)
    assert "on_signup" in str(e.value)


def test_a_bad_policy_on_a_class() -> None:
    class Eager(EventListener):
        tries = -1

        async def handle(self, event: Signup) -> None: ...

    with pytest.raises(RegistrationError, match=r"Eager: tries must be an int >= 1"):
        EventBus({Signup: [Eager]})


# -- annotations -----------------------------------------------------------------------


def test_an_annotation_naming_no_event_subclass() -> None:
    def on_int(event: int) -> None: ...

    class OnModel(EventListener):
        async def handle(self, event: NotAnEvent) -> None: ...

    with pytest.raises(RegistrationError, match=r"on_int: .* names <class 'int'>, which is not"):
        EventBus().listen(on_int)
    with pytest.raises(RegistrationError, match=r"OnModel: .* which is not an Event subclass"):
        EventBus().listen(OnModel)


def test_a_missing_annotation_or_parameter() -> None:
    def untyped(event):  # type: ignore[no-untyped-def]
        ...

    def no_params() -> None: ...

    with pytest.raises(RegistrationError, match="untyped: cannot infer the event type") as e:
        EventBus().listen(untyped)
    assert "@listen(NewChatEvent)" in str(e.value)
    with pytest.raises(
        RegistrationError, match=r"no_params: the handler takes no event parameter.*give it one"
    ):
        EventBus().listen(no_params)


async def test_an_unknown_name_fails_when_first_needed_and_keeps_failing(
    modules: Modules,
) -> None:
    modules.write(
        "listeners",
        """
        from typing import TYPE_CHECKING

        from eventbus import EventListener

        if TYPE_CHECKING:
            from PKG.events import NeverDefined_TOK

        class OnGhost(EventListener):
            async def handle(self, event: "NeverDefined_TOK") -> None: ...
        """,
    )
    listeners = modules.load("listeners")
    bus = EventBus({Signup: [Good]})
    bus.listen(listeners.OnGhost)  # may still be imported later: accepted for now
    message = rf"OnGhost: the annotation names 'NeverDefined_{modules.token}'"
    for _ in range(2):  # a clear error every time, not once and then silence
        with pytest.raises(RegistrationError, match=message):
            await bus.dispatch_now(Signup())
    with pytest.raises(RegistrationError, match=message):
        bus.listeners_for(Signup)


def test_an_ambiguous_name(modules: Modules) -> None:
    for module in ("billing", "shipping"):
        modules.write(
            module,
            """
            from eventbus import Event

            class Paid_TOK(Event):
                pass
            """,
        )
        modules.load(module)
    modules.write(
        "listeners",
        """
        from eventbus import EventListener

        class OnPaid(EventListener):
            async def handle(self, event: "Paid_TOK") -> None: ...
        """,
    )
    listeners = modules.load("listeners")
    with pytest.raises(RegistrationError, match=r"OnPaid: .* which is ambiguous") as e:
        EventBus().listen(listeners.OnPaid)
    assert f"{modules.package}.billing.Paid_{modules.token}" in str(e.value)
    assert f"{modules.package}.shipping.Paid_{modules.token}" in str(e.value)


def test_an_annotation_that_does_not_evaluate(modules: Modules) -> None:
    modules.write(
        "listeners",
        """
        def on_it(event: "list[") -> None: ...
        """,
    )
    listeners = modules.load("listeners")
    with pytest.raises(RegistrationError, match=r"on_it: cannot evaluate the event annotation"):
        EventBus().listen(listeners.on_it)


# -- provider modules ------------------------------------------------------------------


PROVIDER_HEAD = """
from eventbus import Event, EventListener

class Signup(Event):
    pass

class Good(EventListener):
    async def handle(self, event: Signup) -> None: ...

"""


def test_a_missing_provider_module(modules: Modules) -> None:
    name = f"{modules.package}.event_provider"
    with pytest.raises(ProviderNotFound, match=re.escape(f"provider module {name!r} was not")):
        eventbus.load_provider(name, bus=EventBus())
    with pytest.raises(ProviderNotFound):
        eventbus.load_provider("no_such_package_anywhere.event_provider", bus=EventBus())


def test_a_provider_whose_own_import_is_missing_shows_the_real_cause(modules: Modules) -> None:
    name = modules.write("event_provider", "import no_such_dependency_here\nevents = {}\n")
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_here") as e:
        eventbus.load_provider(name, bus=EventBus())
    assert not isinstance(e.value, ProviderNotFound)


def test_a_provider_without_events(modules: Modules) -> None:
    name = modules.write("event_provider", "listeners = {}\n")
    with pytest.raises(RegistrationError, match=rf"provider module '{name}' has no `events`"):
        eventbus.load_provider(name, bus=EventBus())


@pytest.mark.parametrize(
    "events",
    [
        "[Signup]",
        "{Signup: Good}",
        "{Signup: {Good}}",
        "'Signup'",
    ],
)
def test_a_provider_whose_events_is_not_a_dict_of_lists(modules: Modules, events: str) -> None:
    name = modules.write("event_provider", PROVIDER_HEAD + f"events = {events}\n")
    bus = EventBus()
    with pytest.raises(RegistrationError, match=rf"{name}\.events must be a dict of event"):
        eventbus.load_provider(name, bus=bus)
    assert bus.registered_types() == []


def test_a_provider_with_a_bad_key(modules: Modules) -> None:
    name = modules.write("event_provider", PROVIDER_HEAD + "events = {Good: [Signup]}\n")
    with pytest.raises(RegistrationError, match="Good is a listener, not an event"):
        eventbus.load_provider(name, bus=EventBus())
