"""Issue 10, defects 9 and 11: every setting and every listener is checked when it is given.

A NaN slips through ``value < 0`` checks (every comparison with NaN is false) and an
infinity overflows the first timer that meets it, so 0.1 accepted both and failed later,
far away: at the first retry, in a worker runner, at shutdown. Listeners that cannot take
an event were accepted too and then failed every job. Each is now refused at the line that
gave it, with a message naming the owner and the fix.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from eventbus import Event, EventBus, EventListener, RegistrationError, discover
from eventbus.cli import build_parser, main

NAN = math.nan
INF = math.inf


class Ping(Event):
    n: int = 0


# -- defect 9: listener policies ---------------------------------------------------------

BAD_POLICIES: list[tuple[dict[str, Any], str]] = [
    ({"backoff": NAN}, "backoff delays must be >= 0 seconds and finite"),
    ({"backoff": INF}, "backoff delays must be >= 0 seconds and finite"),
    ({"backoff": -INF}, "backoff delays must be >= 0 seconds and finite"),
    ({"backoff": [1, NAN]}, "backoff delays must be >= 0 seconds and finite"),
    ({"backoff": (0.5, INF)}, "backoff delays must be >= 0 seconds and finite"),
    ({"backoff": [1, "5"]}, "backoff delays must be >= 0 seconds"),
    ({"backoff": True}, "backoff must be seconds or a non-empty sequence"),
    ({"backoff": "1"}, "backoff must be seconds or a non-empty sequence"),
    ({"backoff": [True]}, "backoff delays must be >= 0 seconds"),
    ({"timeout": NAN}, "timeout must be > 0 seconds or None"),
    ({"timeout": INF}, "for no limit use None"),
    ({"timeout": -1.0}, "timeout must be > 0 seconds or None"),
    ({"timeout": "3"}, "timeout must be > 0 seconds or None"),
    ({"tries": 2.0}, "tries must be an int >= 1"),
    ({"tries": True}, "tries must be an int >= 1"),
]


@pytest.mark.parametrize(("policy", "message"), BAD_POLICIES)
def test_bad_policy_given_to_listen_is_refused_naming_the_listener(
    policy: dict[str, Any], message: str
) -> None:
    bus = EventBus()

    async def on_ping(event: Ping) -> None:
        pass

    with pytest.raises(RegistrationError, match=message) as caught:
        bus.listen(Ping, **policy)(on_ping)
    assert "on_ping" in str(caught.value)
    assert bus.listeners_for(Ping) == []


@pytest.mark.parametrize(("policy", "message"), BAD_POLICIES)
def test_bad_policy_class_attributes_are_refused_in_a_provider_dict(
    policy: dict[str, Any], message: str
) -> None:
    listener = type("PingListener", (EventListener,), {"handle": _handle, **policy})
    with pytest.raises(RegistrationError, match=message) as caught:
        EventBus({Ping: [listener]})
    assert "PingListener" in str(caught.value)


@pytest.mark.parametrize(("policy", "message"), BAD_POLICIES[:3])
def test_bad_policy_class_attributes_are_refused_by_bare_listen(
    policy: dict[str, Any], message: str
) -> None:
    bus = EventBus()
    listener = type("PingListener", (EventListener,), {"handle": _handle, **policy})
    with pytest.raises(RegistrationError, match=message):
        bus.listen(listener)


async def _handle(self: Any, event: Ping) -> None:
    pass


def test_good_policies_are_still_accepted() -> None:
    bus = EventBus()

    async def on_ping(event: Ping) -> None:
        pass

    bus.listen(Ping, tries=3, backoff=[0, 0.5, 2], timeout=1)(on_ping)
    (listener,) = bus.listeners()
    assert listener.policy.as_dict() == {"tries": 3, "backoff": [0, 0.5, 2], "timeout": 1.0}


# -- defect 9: bus, farm, RabbitMQ driver and worker settings -----------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"drain_timeout": NAN}, "drain_timeout must be >= 0 seconds or None"),
        ({"drain_timeout": INF}, "for no limit use None"),
        ({"drain_timeout": "30"}, "drain_timeout must be >= 0 seconds or None"),
        ({"max_concurrency": 10.0}, "max_concurrency must be an int >= 1"),
        ({"max_queue": NAN}, "max_queue must be an int >= 1"),
    ],
)
@pytest.mark.parametrize("driver", ["async_farm", "sync"])
def test_bad_bus_settings_are_refused_whatever_the_driver(
    kwargs: dict[str, Any], message: str, driver: str
) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        EventBus(driver=driver, **kwargs)
    assert "EventBus" in str(caught.value)


def test_drain_timeout_zero_and_none_are_still_accepted() -> None:
    assert EventBus(drain_timeout=0).driver.describe()["drain_timeout"] == 0
    assert EventBus(drain_timeout=None).driver.describe()["drain_timeout"] is None


def test_on_failure_must_be_callable() -> None:
    with pytest.raises(TypeError, match="on_failure must be a callable"):
        EventBus(on_failure="log")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_message_size": NAN}, "max_message_size"),
        ({"max_message_size": 0}, "max_message_size"),
        ({"publish_timeout": NAN}, "publish_timeout must be > 0 seconds"),
        ({"publish_timeout": INF}, "publish_timeout must be > 0 seconds"),
        ({"connect_timeout": NAN}, "connect_timeout must be > 0 seconds"),
        ({"connect_timeout": 0}, "connect_timeout must be > 0 seconds"),
        ({"reconnect_interval": INF}, "reconnect_interval must be > 0 seconds"),
        ({"reconnect_interval": -1}, "reconnect_interval must be > 0 seconds"),
        ({"delivery_limit": NAN}, "delivery_limit must be an int >= 1"),
        ({"delivery_limit": 2.5}, "delivery_limit must be an int >= 1"),
    ],
)
def test_bad_rabbitmq_driver_settings_are_refused(kwargs: dict[str, Any], message: str) -> None:
    pytest.importorskip("aio_pika")
    from eventbus.drivers.rabbitmq import RabbitMQDriver

    with pytest.raises(ValueError, match=message) as caught:
        RabbitMQDriver(**kwargs)
    assert "RabbitMQDriver" in str(caught.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"grace": NAN}, "grace must be >= 0 seconds"),
        ({"grace": INF}, "grace must be >= 0 seconds"),
        ({"grace": "30"}, "grace must be >= 0 seconds"),
        ({"stats_interval": NAN}, "stats_interval must be > 0 seconds"),
        ({"stats_interval": 0}, "stats_interval must be > 0 seconds"),
        ({"stats_interval": -INF}, "stats_interval must be > 0 seconds"),
        ({"concurrency": 1.5}, "concurrency must be an int >= 1"),
    ],
)
def test_bad_worker_settings_are_refused(kwargs: dict[str, Any], message: str) -> None:
    pytest.importorskip("aio_pika")
    from eventbus.drivers.rabbitmq import RabbitMQDriver
    from eventbus.worker import Worker

    bus = EventBus(driver=RabbitMQDriver())
    with pytest.raises(ValueError, match=message) as caught:
        Worker(bus, **kwargs)
    assert "Worker" in str(caught.value)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--grace", "nan"], "argument --grace: must be a finite number >= 0"),
        (["--grace", "inf"], "argument --grace: must be a finite number >= 0"),
        (["--grace", "-1"], "argument --grace: must be a finite number >= 0"),
        (["--stats-interval", "nan"], "argument --stats-interval: must be a finite"),
        (["--stats-interval", "0"], "argument --stats-interval: must be a finite"),
        (["--concurrency", "nan"], "argument --concurrency: invalid"),
    ],
)
def test_non_finite_work_options_are_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Parsed only: an accepted value must not start a real worker.
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["work", *argv])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("latency", ["nan"])  # (inf on 0.1 sleeps forever)
def test_non_finite_demo_latency_is_a_usage_error(
    latency: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--events", "1", "--clients", "1", "--latency", latency]) == 2
    assert "--latency must be >= 0 ms and finite" in capsys.readouterr().err


# -- defect 11: listeners that can never take an event -----------------------------------


def _no_params() -> None:
    pass


async def _async_no_params() -> None:
    pass


def _two_required(event: Ping, other: int) -> None:
    pass


async def _async_gen(event: Ping) -> AsyncIterator[None]:
    yield


def _sync_gen(event: Ping) -> Iterator[None]:
    yield


class NoEventParam(EventListener):
    async def handle(self) -> None:  # type: ignore[override]
        pass


class AsyncGenHandle(EventListener):
    async def handle(self, event: Ping) -> AsyncIterator[None]:  # type: ignore[override]
        yield


class SyncGenHandle(EventListener):
    def handle(self, event: Ping) -> Iterator[None]:  # type: ignore[override]
        yield


class AsyncGenCall:
    async def __call__(self, event: Ping) -> AsyncIterator[None]:
        yield


BAD_LISTENERS: list[tuple[Any, str, str]] = [
    (lambda: None, "<lambda>", "takes no event parameter"),
    (_no_params, "_no_params", "takes no event parameter"),
    (_async_no_params, "_async_no_params", "takes no event parameter"),
    (_two_required, "_two_required", "cannot be called with one event"),
    (_async_gen, "_async_gen", "is an async generator function"),
    (_sync_gen, "_sync_gen", "is a generator function"),
    (NoEventParam, "NoEventParam.handle", "takes no event parameter"),
    (AsyncGenHandle, "AsyncGenHandle.handle", "is an async generator function"),
    (SyncGenHandle, "SyncGenHandle.handle", "is a generator function"),
    (AsyncGenCall(), "AsyncGenCall", "is an async generator function"),
]
BAD_IDS = [name for _, name, _ in BAD_LISTENERS]


@pytest.mark.parametrize(("target", "name", "message"), BAD_LISTENERS, ids=BAD_IDS)
def test_unusable_listener_is_refused_in_a_provider_dict(
    target: Any, name: str, message: str
) -> None:
    with pytest.raises(RegistrationError, match=message) as caught:
        EventBus({Ping: [target]})
    assert name in str(caught.value)


@pytest.mark.parametrize(("target", "name", "message"), BAD_LISTENERS, ids=BAD_IDS)
def test_unusable_listener_is_refused_by_listen_with_events(
    target: Any, name: str, message: str
) -> None:
    bus = EventBus()
    with pytest.raises(RegistrationError, match=message):
        bus.listen(Ping)(target)
    with pytest.raises(RegistrationError, match=message):
        bus.listen(Ping, tries=2)(target)
    assert bus.listeners_for(Ping) == []


@pytest.mark.parametrize(("target", "name", "message"), BAD_LISTENERS, ids=BAD_IDS)
def test_unusable_listener_is_refused_by_bare_listen(target: Any, name: str, message: str) -> None:
    bus = EventBus()
    with pytest.raises(RegistrationError, match=message):
        bus.listen(target)
    assert bus.listeners_for(Ping) == []


def test_listeners_taking_the_event_are_still_accepted() -> None:
    async def star(*args: Any) -> None:
        pass

    def with_default(event: Ping, extra: int = 1) -> None:
        pass

    class Callable_:
        async def __call__(self, event: Ping) -> None:
            pass

    bus = EventBus({Ping: [star, with_default, Callable_(), lambda event: None]})
    assert len(bus.listeners_for(Ping)) == 4


LISTENERS_MODULE = """
from eventbus import Event, EventListener


class Ping(Event):
    n: int = 0


class NoParam(EventListener):
    async def handle(self) -> None:
        pass


class Streams(EventListener):
    async def handle(self, event: Ping):
        yield


class Fine(EventListener):
    async def handle(self, event: Ping) -> None:
        pass
"""


def test_discover_reports_unusable_listeners_as_skipped_with_the_reason(project: Any) -> None:
    package = project / "app" / "listeners"
    package.mkdir(parents=True)
    (project / "app" / "__init__.py").write_text("")
    (package / "__init__.py").write_text(LISTENERS_MODULE)
    bus = EventBus()
    found = discover("app.listeners", bus)
    assert [d.listener.__name__ for d in found.registered] == ["Fine"]
    reasons = {s.listener.__name__: s.reason for s in found.skipped}
    assert set(reasons) == {"NoParam", "Streams"}
    assert "takes no event parameter" in reasons["NoParam"]
    assert "is an async generator function" in reasons["Streams"]
