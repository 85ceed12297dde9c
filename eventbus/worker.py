"""The 0.1 import path of the RabbitMQ worker: :mod:`eventbus.drivers.rabbitmq.worker`.

Kept so ``from eventbus.worker import Worker, current_job`` goes on working; new code imports
from :mod:`eventbus.drivers.rabbitmq.worker`. Like that module, this one needs aio-pika.
"""

from __future__ import annotations

from .drivers.rabbitmq.worker import (
    ATTEMPTS_HEADER,
    CRASHES_HEADER,
    ERROR_HEADER,
    ERROR_TYPE_HEADER,
    REASON_HEADER,
    Job,
    JobKilledWorker,
    Worker,
    WorkerCrashed,
    WorkerReport,
    current_job,
)

__all__ = [
    "ATTEMPTS_HEADER",
    "CRASHES_HEADER",
    "ERROR_HEADER",
    "ERROR_TYPE_HEADER",
    "REASON_HEADER",
    "Job",
    "JobKilledWorker",
    "Worker",
    "WorkerCrashed",
    "WorkerReport",
    "current_job",
]
