"""Which job killed the worker: suspects run alone, and a crash while alone is a strike.

When a worker process dies (``os._exit``, a segfault, the OOM killer), the broker redelivers
*every* message it held, the innocent ones prefetched beside the crasher included, and
nothing says which one it was. So a worker never runs a redelivered message (a *suspect*)
beside anything else:

1. it starts nothing else: deliveries that arrive are held, unacked (at most the prefetch;
   if the process dies they come back as suspects, with no strike), and it waits for its
   running jobs to finish. It does not stop consuming: a ``basic.cancel`` on a quorum queue
   returns the deliveries on their way to the consumer flagged redelivered, false suspects
   whose own runs alone would cancel again;
2. it publishes the suspect, with :data:`CRASHES_HEADER` one higher, into its own *alone
   queue*, takes it back with ``basic.get``, acks the original and runs the copy;
3. if the process dies now, the copy, unacked in the alone queue, is dead-lettered back into
   the work queue by the alone queue's message TTL, carrying the higher count: a *strike*,
   proven, because that copy was the only job the process held;
4. a message with ``crash_limit`` strikes is not run again: ``failed()`` is called with
   :class:`eventbus.JobKilledWorker` and it is dead-lettered with the reason.

A connection loss or a grace period that runs out during the alone run also returns the
copy, so the default ``crash_limit`` is 2: one such accident never dead-letters a job.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ALONE_TTL_MS",
    "CRASHES_HEADER",
    "alone_arguments",
    "crashes",
    "is_suspect",
    "own_headers",
]

#: Times the job was running alone in a worker process that died. Present (even 0) also
#: marks a re-published suspect, which has lost the broker's ``redelivered`` flag.
CRASHES_HEADER = "x-eventbus-crashes"
#: How long a copy returned to an alone queue (its worker died) waits before it is
#: dead-lettered back into the work queue; also the longest a copy may wait between its
#: publish and the worker's ``basic.get``.
ALONE_TTL_MS = 2000
#: An alone queue nobody used for this long is deleted by the broker (its worker is gone).
ALONE_EXPIRES_MS = 120_000


def crashes(headers: dict[str, Any] | None) -> int | None:
    """The strike count a message carries, or ``None`` when it never was a suspect."""
    if not headers:
        return None
    value = headers.get(CRASHES_HEADER)
    if value is None:
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def is_suspect(redelivered: bool | None, headers: dict[str, Any] | None) -> bool:
    """Delivered before (the broker's flag), or re-published as a suspect."""
    if redelivered:
        return True
    return headers is not None and CRASHES_HEADER in headers


def own_headers(headers: dict[str, Any] | None) -> dict[str, Any]:
    """The eventbus headers of a message, to carry over when it is re-published."""
    if not headers:
        return {}
    return {key: value for key, value in headers.items() if key.startswith("x-eventbus-")}


def alone_arguments(work_queue: str) -> dict[str, Any]:
    """An alone queue: a returned copy expires back into ``work_queue``; idle, it goes away."""
    return {
        "x-message-ttl": ALONE_TTL_MS,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": work_queue,
        "x-expires": ALONE_EXPIRES_MS,
    }
