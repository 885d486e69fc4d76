"""Start and stop real brokers (Redis, RabbitMQ, Kafka) from code, and hand out their URLs.

``start("redis")`` returns a running :class:`Broker`; ``broker.url`` is what the matching bus
config takes. It uses, in order: an address from the environment, a testcontainers container
where Docker runs, or a local process on a free loopback port. The launcher knows nothing of
buses: it only hands out URLs.
"""

from ..errors import BrokerError, BrokerUnavailableError
from .base import ENV_VARS, KINDS, MODES, Broker
from .cluster import ClusterNode, RabbitMQCluster
from .doctor import ModeStatus, diagnose, format_report
from .launch import astart, start

__all__ = [
    "ENV_VARS",
    "KINDS",
    "MODES",
    "Broker",
    "BrokerError",
    "BrokerUnavailableError",
    "ClusterNode",
    "ModeStatus",
    "RabbitMQCluster",
    "astart",
    "diagnose",
    "format_report",
    "start",
]
