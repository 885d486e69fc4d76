"""What each broker's container is told (command, environment) and the URL that reaches it.

Every image, the real one or a stand-in, is asked the same of: see the contract in the issue
that brought containers to real Docker (#10). The secrets are random per container.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from .base import build_url

__all__ = ["PORTS", "Spec", "spec"]

#: The port each broker listens on inside its container.
PORTS = {"redis": 6379, "rabbitmq": 5672, "kafka": 9092}


@dataclass(frozen=True)
class Spec:
    """One container to start: its command (None: the image's), environment, URL and the
    secrets that must never be shown."""

    url: str
    command: list[str] | None = None
    env: dict[str, str] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()


def spec(kind: str, host: str, port: int) -> Spec:
    """The container for ``kind``, to be reached at ``host:port`` (the published host port)."""
    if kind == "redis":
        password = secrets.token_hex(16)
        command = ["redis-server", "--requirepass", password]
        command += ["--appendonly", "yes", "--appendfsync", "everysec"]  # AOF in its /data
        return Spec(build_url(kind, host, port, "default", password), command, {}, (password,))
    if kind == "rabbitmq":
        user, password = f"eslab-{secrets.token_hex(4)}", secrets.token_hex(12)
        env = {"RABBITMQ_DEFAULT_USER": user, "RABBITMQ_DEFAULT_PASS": password}
        return Spec(build_url(kind, host, port, user, password), None, env, (password,))
    return Spec(build_url(kind, host, port), None, _kafka_env(host, port))


def _kafka_env(host: str, port: int) -> dict[str, str]:
    """apache/kafka as one KRaft node that advertises the address the client uses."""
    return {
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_LISTENERS": f"PLAINTEXT://0.0.0.0:{PORTS['kafka']},CONTROLLER://0.0.0.0:9093",
        "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://{host}:{port}",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
    }
