"""Argument checks shared by policies, the bus, the drivers, the worker and the CLI.

Each check names the owner of the setting in its message (``"MyListener: backoff"``,
``"EventBus(drain_timeout=...)"``), because a NaN or an infinity accepted at construction
only fails much later, far from the line that set it: NaN compares false with everything
(``nan < 0`` is false, so it slips through range checks) and an infinite delay overflows
the first timer it reaches.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["check_count", "check_limit", "check_seconds", "parse_count", "parse_seconds"]


def check_count(
    value: Any, what: str, *, minimum: int = 1, error: type[Exception] = ValueError
) -> int:
    """``value`` if it is an int >= ``minimum`` (a bool is not a count)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise error(f"{what} must be an int >= {minimum}, got {value!r}")
    return value


def check_seconds(
    value: Any,
    what: str,
    *,
    zero_ok: bool = False,
    error: type[Exception] = ValueError,
    _alternative: str = "",
) -> float:
    """``value`` as float seconds if it is a finite number > 0 (or >= 0 with ``zero_ok``)."""
    bound = ">= 0" if zero_ok else "> 0"
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
        why = "" if not number or math.isfinite(value) else "; NaN and infinity are not durations"
        raise error(f"{what} must be {bound} seconds{_alternative}, got {value!r}{why}")
    return float(value)


def check_limit(
    value: Any, what: str, *, zero_ok: bool = False, error: type[Exception] = ValueError
) -> float | None:
    """Like :func:`check_seconds`, where ``None`` means "no limit".

    Infinity is refused with a pointer to ``None``, so "no limit" has one spelling.
    """
    if value is None:
        return None
    if isinstance(value, float) and math.isinf(value) and value > 0:
        raise error(f"{what} must be finite, got {value!r}; for no limit use None")
    return check_seconds(value, what, zero_ok=zero_ok, error=error, _alternative=" or None")


# -- argparse ``type=`` converters: a bad value is a usage error (exit 2) ------------------


def parse_count(minimum: int = 1) -> Any:
    """An argparse ``type=`` for an int >= ``minimum``."""
    import argparse

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def parse_seconds(*, zero_ok: bool = True) -> Any:
    """An argparse ``type=`` for a finite duration (``nan``/``inf`` are usage errors)."""
    import argparse

    bound = ">= 0" if zero_ok else "> 0"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
            raise argparse.ArgumentTypeError(f"must be a finite number {bound}, got {text}")
        return value

    return parse
