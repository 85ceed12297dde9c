"""Events of the isolation test (tests/test_worker_isolation.py)."""

from __future__ import annotations

from eventbus import Event


class Fragile(Event):
    """One job; ``crash`` makes its listener kill the worker process."""

    n: int
    crash: bool = False
    #: The first time, the crasher waits until this many innocent jobs run beside it.
    beside: int = 0
    seconds: float = 0.3
