"""The pytest plugin: loaded from the installed package, fixtures isolated between tests.

The pytester projects run in a subprocess with no conftest, as a user's project would: the
plugin can only come from the ``pytest11`` entry point of the installed (editable) package.
"""

from __future__ import annotations

import re
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest

import eventbus
from eventbus import Event, EventBus
from eventbus.testing import EventFake

pytest_plugins = ["pytester"]

README = Path(__file__).resolve().parent.parent / "README.md"
TIMEOUT = 120


class PluginPing(Event):
    n: int = 0


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=TIMEOUT)


# -- in this process -------------------------------------------------------------------------


def test_the_plugin_is_registered_as_a_pytest11_entry_point() -> None:
    found = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert found.get("eventbus") == "eventbus.pytest_plugin"


def test_event_bus_is_a_fresh_default_bus(event_bus: EventBus) -> None:
    assert eventbus.get_bus() is event_bus
    assert event_bus.registered_types() == []


@pytest.mark.anyio
async def test_event_fake_fakes_the_default_bus(event_fake: EventFake) -> None:
    handled: list[Event] = []

    async def listener(event: PluginPing) -> None:
        handled.append(event)

    assert event_fake.bus is eventbus.get_bus()
    event_fake.bus.register({PluginPing: [listener]})
    await eventbus.dispatch_now(PluginPing(n=1))
    await eventbus.dispatch(PluginPing(n=2))  # no farm running: recorded all the same
    assert handled == []
    event_fake.assert_dispatched(PluginPing, times=2)
    event_fake.bus.assert_listening(PluginPing, listener)


@pytest.mark.anyio
async def test_event_fake_with_the_farm_running(event_fake: EventFake, event_bus: EventBus) -> None:
    assert event_fake.bus is event_bus  # asked for both: the fresh bus is the faked one
    async with event_bus:
        await eventbus.dispatch(PluginPing(n=1))
        await event_bus.join()
    event_fake.assert_dispatched_once(PluginPing, where=lambda e: e.n == 1)


# -- in a temporary project, through the installed entry point ------------------------------

ISOLATION = """
    import pytest

    import eventbus
    from eventbus import Event

    ORIGINAL = eventbus.get_bus()
    seen = []


    class Ping(Event):
        n: int = 0


    async def on_ping(event: Ping) -> None:
        seen.append(event.n)


    @pytest.fixture(params=["asyncio", "trio"])
    def anyio_backend(request):
        return request.param


    def test_1_registers(event_bus):
        assert eventbus.get_bus() is event_bus is ORIGINAL  # one default bus: the app holds it too
        eventbus.listen(Ping)(on_ping)
        assert event_bus.listeners_for(Ping) == [on_ping]


    def test_2_must_not_see_it(event_bus):
        assert event_bus.listeners_for(Ping) == []
        assert event_bus.registered_types() == []


    def test_3_the_default_bus_is_back():
        assert eventbus.get_bus() is ORIGINAL
        assert ORIGINAL.listeners_for(Ping) == []


    @pytest.mark.anyio
    async def test_4_fake_records(event_fake, event_bus):
        assert event_fake.bus is event_bus is eventbus.get_bus()
        event_bus.register({Ping: [on_ping]})
        seen.clear()
        await eventbus.dispatch_now(Ping(n=1))
        async with event_bus:
            await eventbus.dispatch(Ping(n=2))
            await event_bus.join()
        assert seen == []
        event_fake.assert_dispatched(Ping, times=2)


    @pytest.mark.anyio
    async def test_5_not_faked_any_more(event_bus):
        event_bus.register({Ping: [on_ping]})
        seen.clear()
        await eventbus.dispatch_now(Ping(n=3))
        assert seen == [3]


    @pytest.mark.anyio
    async def test_6_event_fake_alone_fakes_the_current_default(event_fake):
        assert event_fake.bus is ORIGINAL
        ORIGINAL.register({Ping: [on_ping]})  # undone after the test, like any registration
        seen.clear()
        await eventbus.dispatch_now(Ping(n=4))
        assert seen == []
        event_fake.assert_dispatched_once(Ping)


    def test_6b_its_registration_was_undone():
        assert ORIGINAL.listeners_for(Ping) == []


    @pytest.mark.anyio
    async def test_7_the_default_is_no_longer_faked():
        ORIGINAL.register({Ping: [on_ping]})  # the last test: nothing after it to leak into
        seen.clear()
        await eventbus.dispatch_now(Ping(n=5))
        assert seen == [5]
"""


def test_fixtures_isolate_tests_in_a_project_without_conftest(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_isolation=textwrap.dedent(ISOLATION))
    result = run(pytester, "-v")
    # test_4..test_7 run on asyncio and trio, in file order (test_1 before test_2, ...).
    result.assert_outcomes(passed=12)
    result.stdout.fnmatch_lines(
        [
            "*test_1_registers PASSED*",
            "*test_2_must_not_see_it PASSED*",
            "*test_3_the_default_bus_is_back PASSED*",
            "*test_4_fake_records?asyncio? PASSED*",
            "*test_4_fake_records?trio? PASSED*",
            "*test_7_the_default_is_no_longer_faked?trio? PASSED*",
        ]
    )


def test_without_the_event_bus_fixture_registrations_do_leak(pytester: pytest.Pytester) -> None:
    """The control for the isolation test: the same pair fails without ``event_bus``."""
    pytester.makepyfile(
        test_leak="""
        import eventbus
        from eventbus import Event

        class Ping(Event):
            pass

        async def on_ping(event: Ping) -> None: ...

        def test_1_registers():
            eventbus.get_bus().register({Ping: [on_ping]})

        def test_2_must_not_see_it():
            assert eventbus.get_bus().listeners_for(Ping) == []
        """
    )
    run(pytester).assert_outcomes(passed=1, failed=1)


def test_fixtures_come_from_the_entry_point(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_uses_fixture="""
        def test_it(event_bus):
            pass
        """
    )
    run(pytester).assert_outcomes(passed=1)
    result = run(pytester, "-p", "no:eventbus")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'event_bus' not found*"])


def test_a_failing_assertion_explains_itself_in_pytest_output(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_fails="""
        import pytest
        import eventbus
        from eventbus import Event

        class ChatOpened(Event):
            chat_id: int

        class UserJoined(Event):
            name: str

        @pytest.mark.anyio
        async def test_it(event_fake):
            await eventbus.dispatch(UserJoined(name="ada"))
            await eventbus.dispatch(ChatOpened(chat_id=7))
            event_fake.assert_dispatched(ChatOpened, where=lambda e: e.chat_id == 8)
        """
    )
    result = run(pytester)
    result.assert_outcomes(failed=2)  # anyio runs it on each installed backend
    result.stdout.fnmatch_lines(
        [
            "*AssertionError: expected ChatOpened matching <lambda at test_fails.py:*> "
            "to be dispatched, but it was not.",
            "*dispatched on default (2 events):",
            "*UserJoined ('user_joined') x1",
            "*ChatOpened ('chat_opened') x1",
            "*closest candidates (ChatOpened events that <lambda at test_fails.py:*> rejected):",
            "*ChatOpened(chat_id=7)",
        ]
    )


def readme_files() -> dict[str, str]:
    """The README's Testing section: every code block whose first line names its file."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Testing\n", 1)[1].split("\n## ", 1)[0]
    files = {}
    for block in re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL):
        first, _, _ = block.partition("\n")
        if match := re.fullmatch(r"# ((?:app|tests)/\S+\.py)", first.strip()):
            files[match.group(1)] = block
    return files


def test_the_readme_testing_examples_run(pytester: pytest.Pytester) -> None:
    files = readme_files()
    assert {"app/events.py", "tests/test_chats.py", "tests/test_without_fixtures.py"} <= set(files)
    assert {"app/main.py", "tests/test_api.py"} <= set(files)
    (pytester.path / "app").mkdir()
    (pytester.path / "app" / "__init__.py").write_text("")
    (pytester.path / "tests").mkdir()
    for name, source in files.items():
        (pytester.path / name).write_text(source)
    result = run(pytester, "-v", "tests")
    result.assert_outcomes(passed=9)  # the async ones on asyncio and trio
    result.stdout.fnmatch_lines_random(
        [
            "*test_create_chat_announces_the_new_chat?asyncio? PASSED*",
            "*test_create_chat_announces_the_new_chat?trio? PASSED*",
            "*test_generate_chat_title_titles_the_chat?asyncio? PASSED*",
            "*test_generate_chat_title_titles_the_chat?trio? PASSED*",
            "*test_the_provider_wires_the_title_listener PASSED*",
            "*test_create_chat_with_a_with_block?trio? PASSED*",
            "*test_posting_a_chat_titles_it PASSED*",
            "*test_posting_a_chat_announces_it PASSED*",
        ]
    )
