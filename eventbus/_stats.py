"""The counters a bus keeps exactly: reading one is an attribute access."""

from __future__ import annotations

__all__ = ["Stats"]


class Stats:
    """Counters kept exactly by the bus; reading one is an attribute access.

    ``dispatched`` counts events; ``queued`` and ``running`` are current gauges (jobs
    waiting, jobs in a listener now); ``succeeded``, ``failed`` and ``dropped`` count jobs
    (event x listener) in their final state; ``retried`` counts retries.
    """

    __slots__ = ("dispatched", "dropped", "failed", "queued", "retried", "running", "succeeded")

    def __init__(self) -> None:
        self.dispatched = 0
        self.queued = 0
        self.running = 0
        self.succeeded = 0
        self.failed = 0
        self.retried = 0
        self.dropped = 0

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in _STATS_ORDER}

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v}" for k, v in self.as_dict().items())
        return f"Stats({inner})"


_STATS_ORDER = ("dispatched", "queued", "running", "succeeded", "failed", "retried", "dropped")
