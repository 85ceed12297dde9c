"""``eventbus make event|listener NAME``: scaffold an event or a listener module.

The generated files are what a user would write by hand (see the README quickstart), and
they pass ``ruff check`` and ``mypy --strict`` as generated. Nothing is ever overwritten.
"""

from __future__ import annotations

import argparse
import importlib
import keyword
import os
import sys
from pathlib import Path

from eventbus._errors import EventBusError
from eventbus._event import Event, default_event_name, snake_case
from eventbus._provider import is_missing

__all__ = ["InvalidName", "class_and_module", "register"]

EVENTS_DIR = "app/events"
LISTENERS_DIR = "app/listeners"
EVENTS_PACKAGE = "app.events"

EVENT_TEMPLATE = '''\
"""{cls}: something that happened, as immutable facts."""

from eventbus import Event


class {cls}(Event):
    """Add the facts listeners need as typed fields, e.g. ``chat_id: str``.

    ``{cls}.event_name`` is ``"{event_name}"``; logs and the CLI use it.
    """
'''

LISTENER_TEMPLATE = '''\
"""{cls}: reacts to {event_cls}."""

from typing import TYPE_CHECKING

from eventbus import EventListener

if TYPE_CHECKING:
    from {event_module} import {event_cls}


class {cls}(EventListener):
    """A fresh instance handles each {event_cls}; set tries/backoff/timeout here."""

    async def handle(self, event: "{event_cls}") -> None:
        """Do the side effect; raise to fail the attempt (retried per ``tries``)."""
'''

GENERIC_LISTENER_TEMPLATE = '''\
"""{cls}: reacts to events."""

from eventbus import Event, EventListener


class {cls}(EventListener):
    """A fresh instance handles each event; set tries/backoff/timeout here.

    Narrow the ``event`` annotation to the event class this listener is for:
    ``eventbus.discover`` and ``@bus.listen`` register it for what the annotation names.
    """

    async def handle(self, event: Event) -> None:
        """Do the side effect; raise to fail the attempt (retried per ``tries``)."""
'''


class InvalidName(EventBusError, ValueError):
    """A name given on the command line cannot become a Python class and module.

    ``eventbus make`` turns it into a usage error (exit 2).
    """


def class_and_module(name: str, what: str = "name") -> tuple[str, str]:
    """``NewChatEvent`` or ``new_chat_event`` -> ``("NewChatEvent", "new_chat_event")``.

    Raises :class:`InvalidName` saying why the name cannot be a class name.
    """
    if not name or not name.strip():
        raise InvalidName(f"the {what} is empty; pass a class name such as NewChatEvent")
    if any(ch.isspace() for ch in name):
        raise InvalidName(
            f"the {what} {name!r} contains spaces; write it as one word: "
            f"{''.join(part[:1].upper() + part[1:] for part in name.split())}"
        )
    if "-" in name:
        raise InvalidName(
            f"the {what} {name!r} contains dashes, which Python names cannot; "
            f"use {name.replace('-', '_')!r} or PascalCase"
        )
    if name[0].isdigit():
        raise InvalidName(f"the {what} {name!r} starts with a digit; Python names cannot")
    if not name.isidentifier() or not name.isascii():
        raise InvalidName(
            f"the {what} {name!r} is not a valid Python class name; use letters, digits and "
            "underscores (PascalCase or snake_case)"
        )
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        raise InvalidName(f"the {what} {name!r} is a Python keyword; choose another name")
    if "_" in name.strip("_") or name.islower():
        class_name = "".join(part[:1].upper() + part[1:] for part in name.split("_") if part)
    else:
        class_name = name[:1].upper() + name[1:]
    if not class_name:
        raise InvalidName(f"the {what} {name!r} has no letters; pass a name such as NewChatEvent")
    module = snake_case(class_name)
    if keyword.iskeyword(module):
        raise InvalidName(
            f"the {what} {name!r} would make the module {module!r}, a Python keyword; "
            "choose another name"
        )
    return class_name, module


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    make = subparsers.add_parser(
        "make",
        help="scaffold an event or a listener module",
        description="Write a new event or listener module. Never overwrites a file.",
    )
    kinds = make.add_subparsers(dest="kind", metavar="KIND", required=True)
    event = kinds.add_parser(
        "event",
        help="write app/events/<name>.py with an Event subclass",
        description="Write app/events/<snake_name>.py containing `class <Name>(Event)`.",
    )
    event.add_argument("name", help="class name, PascalCase or snake_case (NewChatEvent)")
    event.add_argument(
        "--path", metavar="DIR", default=EVENTS_DIR, help=f"folder to write to ({EVENTS_DIR})"
    )
    event.set_defaults(handler=_make_event)
    listener = kinds.add_parser(
        "listener",
        help="write app/listeners/<name>.py with an EventListener subclass",
        description=(
            "Write app/listeners/<snake_name>.py containing `class <Name>(EventListener)` "
            "with a typed `async def handle`."
        ),
    )
    listener.add_argument("name", help="class name, PascalCase or snake_case (GenerateChatTitle)")
    listener.add_argument(
        "--event",
        metavar="EVENT",
        help=(
            "the event it handles: a class name (imported from "
            f"{EVENTS_PACKAGE}.<snake_name>) or a dotted path (app.chat.events.NewChatEvent); "
            "it must exist (imported from the current directory) or nothing is written"
        ),
    )
    listener.add_argument(
        "--path",
        metavar="DIR",
        default=LISTENERS_DIR,
        help=f"folder to write to ({LISTENERS_DIR})",
    )
    listener.set_defaults(handler=_make_listener)


def _make_event(args: argparse.Namespace) -> int:
    try:
        cls, module = class_and_module(args.name, "event name")
    except InvalidName as exc:
        return _usage(str(exc))
    source = EVENT_TEMPLATE.format(cls=cls, event_name=default_event_name(cls))
    return _write(Path(args.path), module, source, cls)


def _make_listener(args: argparse.Namespace) -> int:
    try:
        cls, module = class_and_module(args.name, "listener name")
    except InvalidName as exc:
        return _usage(str(exc))
    if args.event is None:
        source = GENERIC_LISTENER_TEMPLATE.format(cls=cls)
    else:
        package, _, event_name = args.event.rpartition(".")
        try:
            event_cls, event_module = class_and_module(event_name, "--event name")
            for part in package.split(".") if package else ():
                class_and_module(part, "--event module")
        except InvalidName as exc:
            return _usage(str(exc))
        target_module = package or f"{EVENTS_PACKAGE}.{event_module}"
        problem = _find_event(target_module, event_cls, dotted=bool(package))
        if problem is not None:
            return _fail(problem)
        source = LISTENER_TEMPLATE.format(cls=cls, event_cls=event_cls, event_module=target_module)
    return _write(Path(args.path), module, source, cls)


def _find_event(module: str, cls: str, *, dotted: bool) -> str | None:
    """``None`` when ``module`` (imported from the project root) defines the event ``cls``.

    Otherwise the error to print: a listener importing a module that does not exist would
    fail at its first import, far from the typo that caused it.
    """
    root = os.getcwd()
    sys.path.insert(0, root)
    importlib.invalidate_caches()
    try:
        imported = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if not is_missing(module, exc):
            return f"importing {module} (for --event) failed: {exc}; fix that import first"
        fix = (
            "check the dotted path (package.module.ClassName)"
            if dotted
            else f"create the event first with `eventbus make event {cls}`, or pass its "
            "dotted path (--event app.chat.events.ChatOpened)"
        )
        return (
            f"--event: the module {module} does not exist (looked from {root}); {fix}. "
            "Run from the project root. Nothing was written"
        )
    except Exception as exc:
        return f"importing {module} (for --event) raised {exc!r}; fix it first"
    finally:
        sys.path.remove(root)
    found = getattr(imported, cls, None)
    if isinstance(found, type) and issubclass(found, Event):
        return None
    if found is not None:
        return f"--event: {module}.{cls} is not an Event subclass; pass an event class"
    events = sorted(
        name
        for name, value in vars(imported).items()
        if isinstance(value, type) and issubclass(value, Event) and value is not Event
    )
    defines = f"it defines {', '.join(events)}" if events else "it defines no event class"
    return f"--event: {module} has no class {cls} ({defines}). Nothing was written"


def _write(folder: Path, module: str, source: str, cls: str) -> int:
    target = folder / f"{module}.py"
    if target.exists():
        return _fail(f"{target} already exists; not overwriting it (pick another name or --path)")
    if folder.exists() and not folder.is_dir():
        return _fail(f"{folder} is not a folder; pass a folder with --path")
    created: list[Path] = []
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    for path in reversed(missing):  # outermost first
        path.mkdir()
        init = path / "__init__.py"
        init.write_text("")
        created.append(init)
    try:
        with target.open("x", encoding="utf-8") as fh:
            fh.write(source)
    except FileExistsError:  # created between the check and the write
        return _fail(f"{target} already exists; not overwriting it")
    for init in created:
        print(f"created {init}")
    print(f"created {target} ({cls})")
    return 0


def _usage(message: str) -> int:
    print(f"eventbus make: error: {message}", file=sys.stderr)
    return 2


def _fail(message: str) -> int:
    print(f"eventbus make: error: {message}", file=sys.stderr)
    return 1
