"""``current_job()``: which job a listener is running, on every driver.

Delivery across processes is at least once, so side effects dedupe on ``current_job().id``:
stable for one event x listener across retries and redeliveries.
"""

from __future__ import annotations

from contextvars import Context, ContextVar

__all__ = ["Job", "current_job", "set_current_job"]


class Job:
    """The job a listener is running: ids for idempotency, which attempt, whose."""

    __slots__ = (
        "attempt",
        "dispatched_at",
        "event_id",
        "event_name",
        "id",
        "listener",
        "redelivered",
    )

    def __init__(
        self,
        id: str,
        event_id: str,
        event_name: str,
        listener: str,
        attempt: int,
        *,
        dispatched_at: float | None = None,
        redelivered: bool = False,
    ) -> None:
        #: Stable per event x listener: the same across retries and redeliveries.
        self.id = id
        #: One per ``dispatch``: shared by the jobs of every listener of that event.
        self.event_id = event_id
        self.event_name = event_name
        #: The listener's ``module.qualname``.
        self.listener = listener
        #: 1 for the first attempt.
        self.attempt = attempt
        #: ``time.time()`` of the ``dispatch``, where the driver knows it.
        self.dispatched_at = dispatched_at
        #: A broker delivered this job before (a worker died or disconnected holding it).
        self.redelivered = redelivered

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.listener} attempt {self.attempt}>"


_current: ContextVar[Job | None] = ContextVar("eventbus.job", default=None)


def current_job() -> Job | None:
    """The job the calling listener is running, on any driver; ``None`` outside a listener."""
    return _current.get()


def set_current_job(ctx: Context, job: Job | None) -> None:
    """For drivers: make ``job`` what ``current_job()`` returns inside ``ctx``."""
    ctx.run(_current.set, job)
