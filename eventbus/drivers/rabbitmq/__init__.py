"""The ``rabbitmq`` driver: jobs published to RabbitMQ, run by ``eventbus work`` processes.

Its modules, each one concern:

- :mod:`.driver`: :class:`RabbitMQDriver`, the producer side (connection, publisher
  confirms, publishing with a timeout), :func:`require_asyncio`, :func:`safe_url` and the
  defaults (``DEFAULT_URL``, ``DEFAULT_QUEUE``, ``URL_ENV``, ``QUEUE_ENV``);
- :mod:`.topology`: :class:`Topology`, the queues of one bus queue (work, dead-letter,
  poison, delay tiers: their names and arguments, declaring them), the delay-tier ladder
  ``DELAY_TIERS_MS``, and :class:`BrokerError`;
- :mod:`.worker`: the consumer behind ``eventbus work`` (:class:`~.worker.Worker`,
  ``WorkerReport``, ``Job``, ``current_job``, the dead-letter header names); also importable
  as :mod:`eventbus.worker`, its 0.1 path;
- :mod:`._isolation`: how a worker proves which job killed it (suspects run alone);
- :mod:`.admin`: the broker operations behind ``eventbus queue`` (``queue_stats``,
  ``replay_dead``).

The message format is broker-neutral: :mod:`eventbus.drivers._wire`.
"""

# The extra first: a missing aio-pika is reported as such (with its name, for the bus's
# "pip install 'eventbus[rabbitmq]'" hint) even when the submodules are cached already.
import aio_pika  # noqa: F401

from .driver import (
    DEFAULT_QUEUE,
    DEFAULT_URL,
    QUEUE_ENV,
    URL_ENV,
    RabbitMQDriver,
    require_asyncio,
    safe_url,
)
from .topology import DELAY_EXPIRES_MARGIN_MS, DELAY_TIERS_MS, BrokerError, Topology

__all__ = [
    "DEFAULT_QUEUE",
    "DEFAULT_URL",
    "DELAY_EXPIRES_MARGIN_MS",
    "DELAY_TIERS_MS",
    "QUEUE_ENV",
    "URL_ENV",
    "BrokerError",
    "RabbitMQDriver",
    "Topology",
    "require_asyncio",
    "safe_url",
]
