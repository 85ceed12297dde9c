"""Issue 10 #13 and #14: the README's app patterns and the fixtures, in a user's project.

Each project runs in a pytest subprocess with no conftest, as a user's would: the fixtures can
only come from the installed package's ``pytest11`` entry point.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

README = Path(__file__).resolve().parent.parent / "README.md"
TIMEOUT = 120


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=TIMEOUT)


def readme_block(path: str) -> str:
    """The code block of the README's Testing section whose first line is ``# <path>``."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Testing\n", 1)[1].split("\n## ", 1)[0]
    for block in re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL):
        if block.partition("\n")[0].strip() == f"# {path}":
            return block
    raise AssertionError(
        f"README.md's Testing section has no ```python block starting with '# {path}'"
    )


def write_readme_app(pytester: pytest.Pytester, *tests: str) -> None:
    for folder in ("app", "tests"):
        (pytester.path / folder).mkdir()
    (pytester.path / "app" / "__init__.py").write_text("")
    for path in ("app/events.py", "app/chats.py", "app/listeners.py", "app/event_provider.py"):
        (pytester.path / path).write_text(readme_block(path))
    (pytester.path / "app" / "main.py").write_text(readme_block("app/main.py"))
    for path in tests:
        (pytester.path / path).write_text(readme_block(path))


def test_the_readme_fastapi_app_works_with_both_fixtures(pytester: pytest.Pytester) -> None:
    write_readme_app(pytester, "tests/test_api.py")
    result = run(pytester, "-v", "tests")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines_random(
        ["*test_posting_a_chat_titles_it PASSED*", "*test_posting_a_chat_announces_it PASSED*"]
    )


MODULE_BUS_TESTS = """
    from fastapi.testclient import TestClient

    import eventbus
    from app.chats import CHATS
    from app.events import NewChatEvent
    from app.main import app, bus


    def test_the_fixture_is_the_bus_the_app_holds(event_bus):
        assert event_bus is bus is eventbus.get_bus()


    def test_module_bus_dispatch_is_faked_when_both_fixtures_are_used(event_bus, event_fake):
        with TestClient(app) as client:
            chat_id = client.post("/via-bus", params={"first_message": "hi"}).json()["id"]
        event_fake.assert_dispatched_once(NewChatEvent, where=lambda e: str(e.chat_id) == chat_id)
        assert all(chat["title"] == "" for chat in CHATS.values())  # the listener did not run


    def test_module_bus_dispatch_runs_on_the_lifespan_farm(event_bus):
        with TestClient(app) as client:
            client.post("/via-bus", params={"first_message": "hello"})
        assert [c["title"] for c in CHATS.values() if c["first_message"] == "hello"] == ["Hello"]
        assert event_bus.stats.succeeded == 1
"""

VIA_BUS = """

@app.post("/via-bus")
async def post_via_bus(first_message: str) -> dict[str, str]:
    from bson import ObjectId

    from app.chats import CHATS
    from app.events import NewChatEvent

    chat_id = ObjectId()
    CHATS[chat_id] = {"first_message": first_message, "title": ""}
    await bus.dispatch(NewChatEvent(chat_id=chat_id))
    return {"id": str(chat_id)}
"""


def test_the_module_level_bus_is_the_fixture_bus(pytester: pytest.Pytester) -> None:
    write_readme_app(pytester)
    main = pytester.path / "app" / "main.py"
    main.write_text(main.read_text() + VIA_BUS)
    pytester.makepyfile(test_module_bus=textwrap.dedent(MODULE_BUS_TESTS))
    result = run(pytester, "-v", "test_module_bus.py")
    result.assert_outcomes(passed=3)


QUEUE_DRIVER_TESTS = """
    import pytest

    import eventbus
    from eventbus import Event

    AT_IMPORT = eventbus.get_bus()  # an app module's `bus = eventbus.get_bus()`
    ran = []


    class Ping(Event):
        n: int = 0


    async def on_ping(event: Ping) -> None:
        ran.append(event.n)


    def test_1_the_deployment_setting_built_the_app_bus():
        assert AT_IMPORT.driver.name == "rabbitmq"


    @pytest.mark.anyio
    async def test_2_event_bus_runs_on_the_farm(event_bus):
        assert event_bus is AT_IMPORT and event_bus.driver.name == "async_farm"
        event_bus.register({Ping: [on_ping]})
        async with event_bus:
            await eventbus.dispatch(Ping(n=2))
        assert ran == [2]


    @pytest.mark.anyio
    async def test_3_event_fake_runs_on_the_farm(event_fake):
        assert event_fake.bus.driver.name == "async_farm"
        async with event_fake.bus:
            await eventbus.dispatch(Ping(n=3))
        event_fake.assert_dispatched_once(Ping)


    @pytest.mark.eventbus(driver="rabbitmq")
    def test_4_a_test_asks_for_the_broker(event_bus):
        assert event_bus.driver.name == "rabbitmq"


    def test_5_the_app_bus_has_its_driver_back():
        assert AT_IMPORT.driver.name == "rabbitmq"
        assert eventbus.get_bus() is AT_IMPORT


    @pytest.fixture
    def anyio_backend():
        return "asyncio"
"""


def test_queue_driver_in_the_environment_does_not_reach_the_fixtures(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QUEUE_DRIVER", "rabbitmq")  # the README's `export QUEUE_DRIVER=rabbitmq`
    # A port nothing listens on: were a job published, the test would fail, not reach a broker.
    monkeypatch.setenv("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:9/")
    pytester.makepyfile(test_env=textwrap.dedent(QUEUE_DRIVER_TESTS))
    result = run(pytester, "-v")
    result.assert_outcomes(passed=5)


def test_a_fixture_made_default_bus_ignores_queue_driver(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QUEUE_DRIVER", "rabbitmq")
    pytester.makepyfile(
        test_late="""
        import eventbus

        def test_it(event_bus):
            assert event_bus.driver.name == "async_farm"
            assert eventbus.get_bus() is event_bus

        def test_the_default_stays_the_same_object(event_bus):
            import app_module  # imported during a test: it holds the default bus
            assert app_module.bus is event_bus
        """,
        app_module="import eventbus\nbus = eventbus.get_bus()\n",
    )
    run(pytester, "-v").assert_outcomes(passed=2)


def test_a_wrong_marker_says_how_to_write_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_marker="""
        import pytest

        @pytest.mark.eventbus("rabbitmq")
        def test_it(event_bus):
            pass
        """
    )
    result = run(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(['*@pytest.mark.eventbus(driver="rabbitmq")*'])
