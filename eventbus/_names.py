"""How objects are named in logs, errors and on the wire: ``module.qualname``."""

from __future__ import annotations

from typing import Any

__all__ = ["qualified_name"]


def qualified_name(obj: Any) -> str:
    module = getattr(obj, "__module__", None) or "?"
    qualname = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    return f"{module}.{qualname}"
