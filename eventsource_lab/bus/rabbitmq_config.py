"""RabbitMQEventBusConfig: where RabbitMQ is (one node or a cluster's), the exchange, the
queues' names and type."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from . import rabbitmq_connection
from .broker import BrokerBusConfig

__all__ = ["RabbitMQEventBusConfig"]


def _default_url() -> str:
    return os.environ.get("EVENTSOURCE_LAB_RABBITMQ_URL", "amqp://localhost:5672/")


class RabbitMQEventBusConfig(BrokerBusConfig):
    """Settings for :class:`RabbitMQEventBus`.

    Args:
        rabbitmq_url: where RabbitMQ is (default: ``$EVENTSOURCE_LAB_RABBITMQ_URL`` or
            localhost); credentials belong in the URL, never in code. Several URLs
            (comma-separated, or a list) are the nodes of a cluster: the bus connects to the
            first that answers and, when it goes away, to the next.
        exchange_name: the exchange every event is published to; also the queues' prefix.
        exchange_type: ``topic`` (route by key patterns), ``fanout`` (every group gets
            everything, no filtering) or ``direct`` (exact keys).
        prefetch_count: messages a consumer holds unacknowledged at once.
        durable: exchange and queues survive a broker restart, messages are persistent.
        queue_type: ``classic`` or ``quorum`` (replicated over a cluster's nodes, so consuming
            goes on when a node stops; always durable).
        heartbeat: seconds between AMQP heartbeats (0: none); a dead peer is noticed after two.

    With ``enable_dlq=False`` a message that exhausted its retries stays in the retry loop at the
    longest backoff: never dropped, and never holding up the messages behind it.
    """

    rabbitmq_url: str = Field(default_factory=_default_url)
    exchange_name: str = Field("events", min_length=1)
    exchange_type: Literal["topic", "fanout", "direct"] = "topic"
    prefetch_count: int = Field(100, ge=1, le=65535)
    durable: bool = True
    queue_type: Literal["classic", "quorum"] = "classic"
    heartbeat: int = Field(60, ge=0)

    @field_validator("rabbitmq_url", mode="before")
    @classmethod
    def _join_urls(cls, value: object) -> object:
        if isinstance(value, (str, list, tuple)):
            return ",".join(rabbitmq_connection.split_urls(value))
        return value

    @model_validator(mode="after")
    def _quorum_is_durable(self) -> RabbitMQEventBusConfig:
        if self.queue_type == "quorum" and not self.durable:
            raise ValueError("quorum queues are always durable: set durable=True")
        return self

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield (
                name,
                rabbitmq_connection.redact_urls(self.urls) if name == "rabbitmq_url" else value,
            )

    @property
    def urls(self) -> list[str]:
        """The URLs of ``rabbitmq_url``, one per node."""
        return rabbitmq_connection.split_urls(self.rabbitmq_url)

    def queue_arguments(self, **arguments: Any) -> dict[str, Any]:
        """``arguments`` with the queue type, for every queue the bus declares (none for a
        classic queue, so queues declared before the type was a setting stay equivalent)."""
        if self.queue_type == "classic":
            return arguments
        return {"x-queue-type": self.queue_type, **arguments}

    @property
    def queue(self) -> str:
        return f"{self.exchange_name}.{self.consumer_group}"

    @property
    def retry_queue(self) -> str:
        return f"{self.queue}.retry"

    @property
    def dlq_queue(self) -> str:
        return f"{self.queue}.dlq"
