"""Issue 11 requirement 1: drivers by name, from a registry (built-in names and entry points)."""

from __future__ import annotations

import ast
import logging
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from eventbus import Event, EventBus
from eventbus.drivers.farm import AsyncFarm
from eventbus.drivers.sync import SyncDriver

pytestmark = pytest.mark.anyio

EVENTBUS_DIR = Path(__file__).resolve().parent.parent / "eventbus"


class Signup(Event):
    email: str = "a@example.com"


# A third-party driver, as a package would ship it: records what it is given and handed.
DRIVER_SOURCE = textwrap.dedent(
    """
    from typing import ClassVar
    from eventbus.drivers.base import Driver

    class RecordingDriver(Driver):
        name = "recording"
        bus_options: ClassVar[frozenset[str]] = frozenset({"max_queue"})

        def __init__(self, **options):
            self.options = options
            self.submitted = []

        async def submit(self, event, listeners, context):
            self.submitted.append((event, [listener.name for listener in listeners]))
    """
)


class Site:
    """A temporary site dir on sys.path where tests install tiny distributions."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def install(
        self, dist: str, points: dict[str, str], modules: dict[str, str] | None = None
    ) -> None:
        for module, source in (modules or {}).items():
            (self.root / f"{module}.py").write_text(source)
        info = self.root / f"{dist}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
        lines = "".join(f"{name} = {target}\n" for name, target in points.items())
        (info / "entry_points.txt").write_text(f"[eventbus.drivers]\n{lines}")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))  # also invalidates importlib's finder caches
    monkeypatch.delenv("QUEUE_DRIVER", raising=False)
    before = set(sys.modules)
    yield Site(root)
    for name in set(sys.modules) - before:
        if name.startswith("ebtest_"):
            del sys.modules[name]


def unique(prefix: str) -> str:
    """A fresh name: drivers are cached by name for the life of the process."""
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def install_recording(site: Site) -> tuple[str, str]:
    """Install a distribution whose entry point names the recording driver."""
    module, name, dist = unique("ebtest_mod"), unique("recording"), unique("ebtest_dist")
    site.install(dist, {name: f"{module}:RecordingDriver"}, {module: DRIVER_SOURCE})
    return name, dist


# -- entry points --------------------------------------------------------------------------


async def test_an_entry_point_driver_is_usable_by_name(site: Site) -> None:
    name, _ = install_recording(site)
    bus = EventBus(driver=name)
    driver: Any = bus.driver
    assert type(driver).__name__ == "RecordingDriver" and driver.bus is bus

    @bus.listen(Signup)
    async def welcome(event: Signup) -> None:
        pass

    async with bus:
        await bus.dispatch(Signup(email="b@example.com"))
    assert driver.submitted == [(Signup(email="b@example.com"), [bus.listeners()[0].name])]
    assert bus.stats.dispatched == 1


def test_an_entry_point_driver_is_usable_through_queue_driver(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, _ = install_recording(site)
    monkeypatch.setenv("QUEUE_DRIVER", name)
    assert type(EventBus().driver).__name__ == "RecordingDriver"


def test_only_given_options_reach_the_driver_and_the_farm_keeps_its_defaults(
    site: Site,
) -> None:
    name, _ = install_recording(site)
    assert EventBus(driver=name).driver.options == {}  # type: ignore[attr-defined]
    assert EventBus(driver=name, max_queue=7).driver.options == {"max_queue": 7}  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match=rf"max_concurrency.*'{name}' driver.*uses only max_queue"):
        EventBus(driver=name, max_concurrency=3)
    farm = EventBus(driver="async_farm").driver.describe()
    assert farm == {
        "driver": "async_farm",
        "max_concurrency": 100,
        "max_queue": 10_000,
        "on_full": "wait",
        "drain_timeout": 30.0,
    }


def test_the_unknown_name_error_lists_built_in_and_entry_point_names(site: Site) -> None:
    name, _ = install_recording(site)
    with pytest.raises(ValueError, match="unknown queue driver driver='celery'") as caught:
        EventBus(driver="celery")
    for listed in ("'async_farm'", "'sync'", "'rabbitmq'", repr(name)):
        assert listed in str(caught.value)
    assert "eventbus.drivers" in str(caught.value)  # says where the extra names come from


@pytest.mark.parametrize(
    ("target", "module_source", "why"),
    [
        ("{module}:Missing", "", "AttributeError"),
        ("{module}:Driver", "raise ImportError('needs libfoo')", "needs libfoo"),
        ("ebtest_absent_{tag}:Driver", None, "ModuleNotFoundError"),
    ],
)
def test_a_broken_entry_point_names_its_distribution_and_entry_point(
    site: Site, target: str, module_source: str | None, why: str
) -> None:
    tag = uuid.uuid4().hex[:8]
    module, name, dist = f"ebtest_broken_{tag}", unique("broken"), unique("ebtest_broken")
    value = target.format(module=module, tag=tag)
    modules = {} if module_source is None else {module: module_source}
    site.install(dist, {name: value}, modules)
    with pytest.raises(ImportError) as caught:
        EventBus(driver=name)
    message = str(caught.value)
    assert f"entry point {name!r} = {value!r}" in message
    assert f"distribution {dist!r} 1.0" in message
    assert why in message


def test_an_entry_point_that_is_not_a_driver_class_is_refused_by_name(site: Site) -> None:
    module, name, dist = unique("ebtest_notdriver"), unique("notdriver"), unique("ebtest_nd")
    site.install(dist, {name: f"{module}:thing"}, {module: "def thing(): pass\n"})
    with pytest.raises(TypeError, match=rf"entry point '{name}'.*{dist}.*not a subclass of"):
        EventBus(driver=name)


def test_two_distributions_claiming_one_name_is_an_error_naming_both(site: Site) -> None:
    name = unique("twice")
    first, second = unique("ebtest_first"), unique("ebtest_second")
    site.install(first, {name: "ebtest_a:Driver"})
    site.install(second, {name: "ebtest_b:Driver"})
    with pytest.raises(ValueError, match="more than one entry point") as caught:
        EventBus(driver=name)
    assert first in str(caught.value) and second in str(caught.value)


def test_an_entry_point_cannot_take_over_a_built_in_name(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    dist = unique("ebtest_hijack")
    site.install(dist, {"sync": "ebtest_hijack:Driver"})
    with (
        caplog.at_level(logging.WARNING, logger="eventbus"),
        pytest.raises(ValueError, match="unknown queue driver"),
    ):
        EventBus(driver="nope")  # reading the entry points reports the clash
    assert type(EventBus(driver="sync").driver) is SyncDriver
    assert any(dist in r.getMessage() and "built-in" in r.getMessage() for r in caplog.records)


# -- options only one driver understands ------------------------------------------------------


@pytest.mark.parametrize(
    "option",
    [
        {"max_concurrency": 5},
        {"max_queue": 5},
        {"on_full": "raise"},
        {"drain_timeout": 5.0},
        {"drain_timeout": None},
    ],
)
def test_a_farm_option_on_the_sync_driver_is_refused_naming_both(option: dict[str, Any]) -> None:
    (key,) = option
    with pytest.raises(TypeError, match=rf"EventBus\({key}=.*'sync' driver.*does not use {key}"):
        EventBus(driver="sync", **option)


def test_a_driver_instance_with_bus_options_says_to_configure_the_instance() -> None:
    with pytest.raises(TypeError, match=r"max_concurrency=50.*AsyncFarm.*configure the instance"):
        EventBus(driver=AsyncFarm(max_concurrency=2), max_concurrency=50)


def test_farm_options_given_to_the_bus_still_reach_the_farm() -> None:
    # Guards the option rule from refusing what the farm does use (drain_timeout=None too).
    driver = EventBus(driver="async_farm", max_queue=5, drain_timeout=None).driver
    assert driver.describe()["max_queue"] == 5 and driver.describe()["drain_timeout"] is None
    with pytest.raises(TypeError, match="configure the instance"):
        EventBus(driver=AsyncFarm(), drain_timeout=None)


# -- the bus knows no concrete driver --------------------------------------------------------


def test_the_bus_imports_no_concrete_driver_and_names_no_driver_dependency() -> None:
    tree = ast.parse((EVENTBUS_DIR / "_bus.py").read_text())
    imported = [
        f"{'.' * node.level}{node.module or ''}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
    ] + [
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    ]
    concrete = [m for m in imported if m.startswith(".drivers.") and m != ".drivers.base"]
    assert concrete == []
    strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)}
    named = {s for s in strings if isinstance(s, str)} & {"aio_pika", "aiormq", "yarl"}
    assert named == set()
    assert "_make_driver" not in {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
