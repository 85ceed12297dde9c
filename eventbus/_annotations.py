"""Which event types a listener hears, read from its handler's annotation.

String annotations (``from __future__ import annotations``, or names imported only under
``TYPE_CHECKING``) are resolved against the handler's module, then that module's
``TYPE_CHECKING`` imports, then the known :class:`Event` subclasses by class name.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import importlib.util
import inspect
import sys
import typing
from collections.abc import Callable, Iterable
from types import ModuleType, UnionType
from typing import Any

from ._errors import RegistrationError, UnresolvedAnnotation
from ._event import Event
from ._listener import Listener, _class_handle
from ._names import qualified_name

__all__ = ["UnresolvedAnnotation", "listener_event_types"]


def listener_event_types(listener: Any, *, may_import: bool = True) -> tuple[type, ...]:
    """Resolve the event types named by the annotation of the handler's event parameter.

    String annotations (``from __future__ import annotations``, or a name imported only under
    ``TYPE_CHECKING``) are evaluated against the handler's module globals, then the module's
    ``if TYPE_CHECKING:`` imports (imported now only with ``may_import``, since at
    registration time that import may be circular), then the known :class:`Event` subclasses
    by class name. A union names several types.
    """
    handler = listener.handler if isinstance(listener, Listener) else _handler_of(listener)
    name = qualified_name(listener.target if isinstance(listener, Listener) else listener)
    params = list(inspect.signature(handler).parameters.values())
    if (isinstance(listener, Listener) and isinstance(listener.target, type)) or (
        not isinstance(listener, Listener) and isinstance(listener, type)
    ):
        params = params[1:]  # self
    if not params:
        raise RegistrationError(
            f"{name}: the handler takes no event parameter; give it one "
            "(`async def handle(self, event: NewChatEvent)`) or name the events: "
            "@listen(NewChatEvent)"
        )
    annotation = params[0].annotation
    if annotation is inspect.Parameter.empty:
        raise RegistrationError(
            f"{name}: cannot infer the event type, the event parameter has no annotation; "
            "annotate it (`event: NewChatEvent`) or name the events: @listen(NewChatEvent)"
        )
    resolved = _resolve(annotation, handler, name, may_import)
    members = typing.get_args(resolved) if _is_union(resolved) else (resolved,)
    for member in members:
        if not (isinstance(member, type) and issubclass(member, Event)):
            raise RegistrationError(
                f"{name}: the event parameter's annotation {annotation!r} names {member!r}, "
                "which is not an Event subclass"
            )
    return tuple(members)


def _handler_of(target: Any) -> Callable[..., Any]:
    return _class_handle(target) if isinstance(target, type) else target


def _is_union(tp: Any) -> bool:
    return isinstance(tp, UnionType) or typing.get_origin(tp) is typing.Union


class _FallbackNames(dict[str, Any]):
    """Module globals, then its TYPE_CHECKING imports, then Event subclasses by class name."""

    def __init__(
        self,
        module_globals: dict[str, Any],
        module: ModuleType | None,
        owner: str,
        may_import: bool,
    ) -> None:
        super().__init__(module_globals)
        self.module = module
        self.owner = owner
        self.may_import = may_import
        self._specs: dict[str, tuple[str, str | None]] | None = None

    def __missing__(self, key: str) -> Any:
        if hasattr(builtins, key):
            return getattr(builtins, key)
        if self._specs is None:
            self._specs = _type_checking_imports(self.module) if self.module else {}
        spec = self._specs.get(key)
        if spec is not None:
            return self._import(key, *spec)
        found = {c for c in _all_event_classes() if c.__name__ == key}
        if len(found) == 1:
            return found.pop()
        if not found:
            raise UnresolvedAnnotation(
                f"{self.owner}: the annotation names {key!r}, which is neither importable from "
                "the listener's module nor a known Event subclass; import the event module "
                "before dispatching, or name the events explicitly: @listen(EventType)"
            )
        options = ", ".join(sorted(qualified_name(c) for c in found))
        raise RegistrationError(
            f"{self.owner}: the annotation names {key!r}, which is ambiguous ({options}); "
            "name the event explicitly: @listen(EventType)"
        )

    def _import(self, key: str, module_name: str, attr: str | None) -> Any:
        if not self.may_import and module_name not in sys.modules:
            raise UnresolvedAnnotation(
                f"{self.owner}: {key!r} comes from a TYPE_CHECKING import of {module_name!r}, "
                "which is not imported yet"
            )
        try:
            imported = importlib.import_module(module_name)
            return imported if attr is None else getattr(imported, attr)
        except (ImportError, AttributeError) as exc:
            raise RegistrationError(
                f"{self.owner}: the annotation names {key!r}, imported under TYPE_CHECKING "
                f"from {module_name!r}, but importing it failed: {exc}"
            ) from exc


def _type_checking_imports(module: ModuleType) -> dict[str, tuple[str, str | None]]:
    """``{bound name: (module, attribute or None)}`` for a module's TYPE_CHECKING imports."""
    try:
        tree = ast.parse(inspect.getsource(module))
    except (OSError, TypeError, SyntaxError):
        return {}
    specs: dict[str, tuple[str, str | None]] = {}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.If) and _is_type_checking(node.test)):
            continue
        for stmt in node.body:
            if isinstance(stmt, ast.ImportFrom):
                base = "." * stmt.level + (stmt.module or "")
                source = importlib.util.resolve_name(base, module.__package__ or "")
                for alias in stmt.names:
                    specs[alias.asname or alias.name] = (source, alias.name)
            elif isinstance(stmt, ast.Import):
                for alias in stmt.names:
                    if alias.asname:
                        specs[alias.asname] = (alias.name, None)
                    else:
                        top = alias.name.partition(".")[0]
                        specs[top] = (top, None)
    return specs


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _all_event_classes() -> Iterable[type[Event]]:
    stack: list[type[Event]] = [Event]
    while stack:
        cls = stack.pop()
        yield cls
        stack.extend(cls.__subclasses__())


def _resolve(annotation: Any, handler: Callable[..., Any], owner: str, may_import: bool) -> Any:
    if not isinstance(annotation, str):
        return annotation
    func = inspect.unwrap(handler)
    module = sys.modules.get(getattr(func, "__module__", ""), None)
    module_globals = dict(vars(module)) if module is not None else {}
    module_globals.update(getattr(func, "__globals__", {}))
    namespace = _FallbackNames(module_globals, module, owner, may_import)
    try:
        # `event: "NewChatEvent"` under `from __future__ import annotations` is a string of
        # a string; unquote as often as needed (a few times at most in real code).
        resolved: Any = annotation
        for _ in range(3):
            if not isinstance(resolved, str):
                break
            resolved = eval(resolved, {"__builtins__": {}}, namespace)
        return resolved
    except RegistrationError:
        raise
    except Exception as exc:
        raise RegistrationError(
            f"{owner}: cannot evaluate the event annotation {annotation!r}: {exc}"
        ) from exc
