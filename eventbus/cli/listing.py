"""``eventbus list``: which listeners each event type reaches, in order, with their policy.

Which event types are shown: every :class:`~eventbus.Event` subclass something is
registered on, plus the loaded subclasses of those (they inherit the listeners through the
MRO) and the loaded event classes that carry a registered mixin. Subclasses of ``Event``
itself are not expanded — a catch-all listener would otherwise list every event class in
the process — so a listener on ``Event`` shows in its own ``event`` row and under the types
that are listed for other reasons.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from typing import Any

from ._common import add_provider_option

__all__ = ["event_types", "register", "table"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "list",
        help="show which listeners each event reaches",
        description=(
            "Load the provider (and/or discover a listeners package) into the default bus and "
            "print each event type with the listeners an event of that type reaches, in order. "
            "Inherited listeners (registered on a base class or mixin) are marked. Run from "
            "the project root: the current directory is importable."
        ),
    )
    add_provider_option(parser, note="; not loaded when only --discover is given")
    parser.add_argument(
        "--discover",
        metavar="PACKAGE",
        action="append",
        default=[],
        help="also register the listener classes of this package by their annotations "
        "(eventbus.discover); repeatable",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(handler=_run)


def event_types(bus: Any) -> list[type]:
    """The event types to show for ``bus`` (module docstring): each key, then its subclasses."""
    from eventbus import Event

    keys = bus.registered_types()
    mixins = [k for k in keys if not issubclass(k, Event)]
    out: list[type] = []
    seen: set[type] = set()

    def add(cls: type) -> None:
        if cls in seen:
            return
        seen.add(cls)
        out.append(cls)
        if cls is not Event:
            for sub in _subclasses(cls):
                add(sub)

    for key in keys:
        if issubclass(key, Event):
            add(key)
    if mixins:
        for cls in _subclasses(Event):
            if any(issubclass(cls, m) for m in mixins):
                add(cls)
    return out


def table(bus: Any) -> list[dict[str, Any]]:
    """The listing as plain data: one dict per event type (what ``--json`` prints)."""
    rows = []
    for cls in event_types(bus):
        routes = bus.routes_for(cls)
        rows.append(
            {
                "event_name": getattr(cls, "event_name", cls.__name__),
                "event": _qualified(cls),
                "listeners": [
                    {
                        "listener": route.listener.name,
                        "registered_on": _qualified(route.key),
                        "inherited": route.inherited,
                        "policy": route.listener.policy.as_dict(),
                    }
                    for route in routes
                ],
            }
        )
    return rows


def _subclasses(cls: type) -> list[type]:
    found: list[type] = []
    stack: list[type] = list(reversed(cls.__subclasses__()))
    while stack:
        sub = stack.pop()
        if sub not in found:
            found.append(sub)
            stack.extend(reversed(sub.__subclasses__()))
    return found


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _run(args: argparse.Namespace) -> int:
    import eventbus
    from eventbus._provider import provider_module

    bus = eventbus.get_bus()
    provider = args.provider
    if provider is None and not args.discover:
        provider = provider_module()
    discoveries = []
    try:
        if provider is not None:
            eventbus.load_provider(provider, bus)
        for package in args.discover:
            discoveries.append(eventbus.discover(package, bus))
        rows = table(bus)
    except eventbus.ProviderNotFound as exc:
        print(f"eventbus list: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        if args.verbose:
            traceback.print_exception(exc)
        what = f"loading {provider!r}" if provider else "discovering listeners"
        print(f"eventbus list: error while {what}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    skipped = [
        {"listener": _qualified(s.listener), "reason": s.reason}
        for d in discoveries
        for s in d.skipped
    ]
    if args.json:
        print(json.dumps({"events": rows, "skipped": skipped}, indent=2))
        return 0
    _print_text(rows, skipped, provider, args.discover)
    return 0


def _print_text(
    rows: list[dict[str, Any]],
    skipped: list[dict[str, str]],
    provider: str | None,
    packages: list[str],
) -> None:
    sources = ([f"provider {provider}"] if provider else []) + [f"discovered {p}" for p in packages]
    print(f"eventbus: {len(rows)} event type(s) from {', '.join(sources)}")
    for row in rows:
        print()
        print(f"{row['event_name']}  ({row['event']})")
        if not row["listeners"]:
            print("    (no listeners)")
        for index, item in enumerate(row["listeners"], 1):
            policy = item["policy"]
            via = f"  [inherited from {item['registered_on']}]" if item["inherited"] else ""
            print(
                f"  {index}. {item['listener']}{via}\n"
                f"       tries={policy['tries']} backoff={policy['backoff']} "
                f"timeout={policy['timeout']}"
            )
    if skipped:
        print()
        print(f"not registered ({len(skipped)}): no usable handle annotation")
        for item in skipped:
            print(f"  - {item['listener']}: {item['reason']}")
