"""A listener's policy for queued jobs: tries, backoff and timeout, validated once."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ._checks import check_count, check_limit
from ._errors import RegistrationError
from ._names import qualified_name

__all__ = ["Policy"]


class Policy:
    """How a queued job of one listener is attempted. Immutable; validated on creation."""

    __slots__ = ("backoff", "timeout", "tries")

    def __init__(
        self,
        tries: int = 1,
        backoff: float | Sequence[float] = 0,
        timeout: float | None = None,
        *,
        owner: str = "listener",
    ) -> None:
        check_count(tries, f"{owner}: tries", error=RegistrationError)
        if isinstance(backoff, int | float) and not isinstance(backoff, bool):
            delays: tuple[float, ...] = (float(backoff),)
        elif isinstance(backoff, Sequence) and not isinstance(backoff, str) and backoff:
            delays = tuple(backoff)
        else:
            raise RegistrationError(
                f"{owner}: backoff must be seconds or a non-empty sequence of seconds, "
                f"got {backoff!r}"
            )
        for delay in delays:
            # NaN would mean "retry now" (or crash the first timer), inf "never": refuse both.
            if isinstance(delay, bool) or not isinstance(delay, int | float):
                raise RegistrationError(
                    f"{owner}: backoff delays must be >= 0 seconds (numbers), got {backoff!r}"
                )
            if not math.isfinite(delay) or delay < 0:
                raise RegistrationError(
                    f"{owner}: backoff delays must be >= 0 seconds and finite, got {backoff!r}; "
                    "set a real delay (e.g. backoff=[1, 5, 30])"
                )
        timeout = check_limit(timeout, f"{owner}: timeout", error=RegistrationError)
        self.tries = tries
        self.backoff: tuple[float, ...] = delays
        self.timeout = timeout

    @classmethod
    def of(
        cls,
        target: Any,
        tries: int | None = None,
        backoff: float | Sequence[float] | None = None,
        timeout: float | None = None,
    ) -> Policy:
        """The policy given here, else the target's class attributes, else the defaults."""

        def pick(given: Any, attr: str, default: Any) -> Any:
            return given if given is not None else getattr(target, attr, default)

        return cls(
            pick(tries, "tries", 1),
            pick(backoff, "backoff", 0),
            pick(timeout, "timeout", None),
            owner=qualified_name(target),
        )

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed ``attempt`` (1-based) before the next one."""
        return float(self.backoff[min(attempt, len(self.backoff)) - 1])

    def as_dict(self) -> dict[str, Any]:
        backoff: float | list[float] = (
            self.backoff[0] if len(self.backoff) == 1 else list(self.backoff)
        )
        return {"tries": self.tries, "backoff": backoff, "timeout": self.timeout}

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.as_dict().items())
        return f"Policy({fields})"
