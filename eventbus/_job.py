"""``current_job()``: which job a listener is running, on every driver.

Delivery across processes is at least once, so side effects dedupe on ``current_job().id``:
stable for one event x listener across retries and redeliveries.
"""

from __future__ import annotations

import threading
import uuid
from contextvars import Context, ContextVar
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from ._event import Event
    from ._listener import Listener

__all__ = ["Job", "LocalJob", "current_job", "set_current_job"]


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


#: The jobs the async farm's workers are running, by worker task id. Setting a ContextVar in
#: each job's context would allocate per job on the farm's hot path (measured: +25-40% on
#: S3), so the farm registers the job for the worker task instead; a thread listener's
#: context gets the ContextVar (see ``eventbus._listener._run_sync``).
running_by_task: dict[int, Job] = {}


def current_job() -> Job | None:
    """The job the calling listener is running, on any driver; ``None`` outside a listener.

    On the async farm it is the job of the worker task calling this (the listener's own
    task, its failure hooks, and a plain ``def`` listener's thread); tasks a farm listener
    starts itself do not see it.
    """
    job = _current.get()
    if job is None and running_by_task:
        try:
            task = anyio.get_current_task().id
        except RuntimeError:  # not in an event loop's task (a thread of our own)
            return None
        job = running_by_task.get(task)
    return job


def set_current_job(ctx: Context, job: Job | None) -> None:
    """For drivers: make ``job`` what ``current_job()`` returns inside ``ctx``."""
    ctx.run(_current.set, job)


class LocalJob(Job):
    """A job run in this process (farm, sync, ``dispatch_now``): its ids are made when read.

    The drivers' hot paths build one per job, so it holds only what they have at hand (the
    compiled listener, the event, the job's context, the attempt); ``id`` and ``event_id`` are
    uuids (as the wire's) drawn on first read, and the jobs of one ``dispatch`` after the first
    point at it (``share_event_with``) for their shared ``event_id``.
    """

    __slots__ = ("_event_id", "_id", "_origin", "compiled", "context", "event")

    compiled: Listener
    event: Event
    context: Context
    _origin: LocalJob
    _event_id: uuid.UUID
    _id: str

    dispatched_at = None
    redelivered = False

    def __init__(self, compiled: Listener, event: Event, attempt: int) -> None:
        # ``context`` is the farm's to set (it queues the job with it) and to delete when the
        # job is done, so a job a listener kept (``current_job()``) does not pin its context.
        self.compiled = compiled
        self.event = event
        self.attempt = attempt

    def share_event_with(self, first: LocalJob) -> None:
        """This job and ``first`` come from one ``dispatch``: the same ``event_id``."""
        self._origin = first

    @property
    def listener(self) -> str:  # type: ignore[override]
        return self.compiled.name

    @property
    def event_name(self) -> str:  # type: ignore[override]
        return self.event.event_name

    @property
    def event_id(self) -> str:  # type: ignore[override]
        return self._event_uuid().hex

    @property
    def id(self) -> str:  # type: ignore[override]
        try:
            return self._id
        except AttributeError:
            pass
        made = uuid.uuid5(self._event_uuid(), self.compiled.name).hex  # the same in every thread
        self._id = made
        return made

    def _event_uuid(self) -> uuid.UUID:
        origin: LocalJob = getattr(self, "_origin", self)
        try:
            return origin._event_id
        except AttributeError:
            pass
        with _lazy:  # thread listeners may read it at once: one uuid per dispatch, not two
            try:
                return origin._event_id
            except AttributeError:
                origin._event_id = uuid.uuid4()
                return origin._event_id


_lazy = threading.Lock()
