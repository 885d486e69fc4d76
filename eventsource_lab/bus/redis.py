"""RedisEventBus: events on a Redis Stream, consumer groups for load sharing and fan-out.

Layout for ``stream_prefix="app"`` and group ``g``: every event goes to the stream
``app:events``; messages that keep failing go to ``app:g:dlq``; a replayed dead letter goes to
``app:g:replay``, which only group ``g`` reads, so replaying never disturbs other groups.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from pydantic import Field
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..errors import BusConnectionError
from ..events import DomainEvent, EventRegistry
from ..redact import redact_url
from . import wire
from .broker import BrokerBusConfig, BrokerEventBus, DeadLetter
from .retry import RECONNECT

__all__ = ["RedisEventBus", "RedisEventBusConfig"]

logger = logging.getLogger("eventsource_lab.bus.redis")

_LOST = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)


def _default_url() -> str:
    return os.environ.get("EVENTSOURCE_LAB_REDIS_URL", "redis://localhost:6379")


class RedisEventBusConfig(BrokerBusConfig):
    """Settings for :class:`RedisEventBus`.

    Args:
        redis_url: where Redis is (default: ``$EVENTSOURCE_LAB_REDIS_URL`` or localhost).
        stream_prefix: prefix of every key the bus uses.
        batch_size: messages read (and acknowledged) per round trip.
        block_ms: how long one read waits for new messages.
        pending_idle_ms: a message unacknowledged this long is taken over from its consumer,
            which is presumed dead.
        max_stream_length: trim the stream to about this many messages (default: never).
    """

    redis_url: str = Field(default_factory=_default_url)
    stream_prefix: str = Field("events", min_length=1)
    batch_size: int = Field(100, ge=1)
    block_ms: int = Field(1000, ge=1)
    pending_idle_ms: int = Field(30_000, ge=1)
    max_stream_length: int | None = Field(None, ge=1)

    @property
    def stream(self) -> str:
        return f"{self.stream_prefix}:events"

    @property
    def dlq_stream(self) -> str:
        return f"{self.stream_prefix}:{self.consumer_group}:dlq"

    @property
    def replay_stream(self) -> str:
        return f"{self.stream_prefix}:{self.consumer_group}:replay"


class RedisEventBus(BrokerEventBus):
    """Publishes with XADD; consumes with XREADGROUP, acknowledging only after every handler
    succeeded, and takes over what dead consumers left pending (XAUTOCLAIM)."""

    config: RedisEventBusConfig

    def __init__(
        self,
        config: RedisEventBusConfig | None = None,
        event_registry: EventRegistry | None = None,
        **options: Any,
    ) -> None:
        super().__init__(config or RedisEventBusConfig(), event_registry, **options)
        self._redis: Redis | None = None

    # -- connection --------------------------------------------------------------------------

    async def _connect(self) -> None:
        client = Redis.from_url(self.config.redis_url)
        try:
            await client.ping()
        except (RedisError, OSError) as exc:
            await client.aclose()
            raise BusConnectionError(
                f"cannot reach Redis at {redact_url(self.config.redis_url)}: {exc}"
            ) from exc
        self._redis = client

    async def _disconnect(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    # -- publishing --------------------------------------------------------------------------

    async def _send(self, events: list[DomainEvent]) -> None:
        assert self._redis is not None
        pipe = self._redis.pipeline(transaction=False)
        for event in events:
            pipe.xadd(
                self.config.stream,
                _fields(event),
                maxlen=self.config.max_stream_length,
                approximate=True,
            )
        try:
            await pipe.execute()
        except _LOST as exc:
            raise BusConnectionError(f"publishing to Redis failed: {exc}") from exc

    # -- consuming ---------------------------------------------------------------------------

    async def _consume(self) -> None:
        await self._create_groups(start="$")
        self._consuming_ready()
        cfg = self.config
        streams = {cfg.stream: ">", cfg.replay_stream: ">"}
        loop = asyncio.get_running_loop()
        block = min(cfg.block_ms, max(1, cfg.pending_idle_ms // 2))
        next_recovery, lost = 0.0, 0
        while not self._stopping:
            try:
                if loop.time() >= next_recovery:
                    await self._recover()
                    next_recovery = loop.time() + cfg.pending_idle_ms / 2000
                response = await self._client.xreadgroup(
                    cfg.consumer_group,
                    cfg.consumer_name,
                    streams,
                    count=cfg.batch_size,
                    block=block,
                )
                if lost:
                    lost = 0
                    self._stats["reconnections"] += 1
                    logger.info("reconnected to Redis")
                for stream, entries in response or ():
                    await self._process(stream.decode(), entries)
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                logger.warning("consumer group vanished (Redis restarted?); recreating it")
                await self._create_groups(start="0")
            except (*_LOST, RedisError) as exc:
                logger.warning("Redis error (%r); retrying", exc)
                await asyncio.sleep(RECONNECT.delay(lost))
                lost += 1

    async def _create_groups(self, start: str) -> None:
        for stream, first in ((self.config.stream, start), (self.config.replay_stream, "0")):
            try:
                await self._client.xgroup_create(
                    stream, self.config.consumer_group, id=first, mkstream=True
                )
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def _process(self, stream: str, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        """Handle a batch from one stream in order, then acknowledge what is done with."""
        self._busy = True
        try:
            done = [
                entry_id
                for entry_id, fields in entries
                if await self._handle(stream, entry_id, fields)
            ]
            if done:
                await self._client.xack(stream, self.config.consumer_group, *done)
        finally:
            self._busy = False

    async def _handle(
        self, stream: str, entry_id: bytes, fields: dict[bytes, bytes] | None
    ) -> bool:
        """Process one message; whether it may be acknowledged."""
        if not fields:  # deleted (trimmed) while pending: nothing left to do
            return True
        self._stats["events_consumed"] += 1
        try:
            if b"data" not in fields:
                raise wire.MalformedMessageError(f"no data field in {sorted(fields)!r:.100}")
            event_type = fields[b"event_type"].decode() if b"event_type" in fields else None
            event = self._decode(fields[b"data"], event_type)
        except (UnicodeDecodeError, *wire.DecodeError) as exc:
            self._stats["events_failed"] += 1
            return await self._dead_letter(stream, entry_id, fields, exc, retries=0)
        failures = await self._deliver(event)
        if not failures:
            return True
        return await self._dead_letter(
            stream, entry_id, fields, failures[0].error, retries=self.config.max_retries
        )

    async def _recover(self) -> None:
        """Take over messages idle longer than ``pending_idle_ms`` (their consumer died)."""
        cfg = self.config
        for stream in (cfg.stream, cfg.replay_stream):
            start: bytes | str = "0-0"
            while True:
                start, claimed, *_ = await self._client.xautoclaim(
                    stream,
                    cfg.consumer_group,
                    cfg.consumer_name,
                    min_idle_time=cfg.pending_idle_ms,
                    start_id=start,
                    count=cfg.batch_size,
                )
                if claimed:
                    self._stats["messages_recovered"] += len(claimed)
                    logger.info("recovered %d pending messages from %s", len(claimed), stream)
                    await self._process_recovered(stream, claimed)
                if start in (b"0-0", "0-0"):
                    break

    async def _process_recovered(self, stream: str, claimed: list[Any]) -> None:
        """Dead-letter messages delivered too often without an ack (they kill consumers);
        process the rest."""
        pending = await self._client.xpending_range(
            stream,
            self.config.consumer_group,
            min=claimed[0][0],
            max=claimed[-1][0],
            count=len(claimed),
            consumername=self.config.consumer_name,
        )
        deliveries = {p["message_id"]: p["times_delivered"] for p in pending}
        limit = self.config.max_retries + 1
        batch = []
        for entry_id, fields in claimed:
            times = deliveries.get(entry_id, 1)
            if fields and times > limit and self.config.enable_dlq:
                error = RuntimeError(f"delivered {times} times without being acknowledged")
                await self._dead_letter(stream, entry_id, fields, error, retries=times - 1)
                await self._client.xack(stream, self.config.consumer_group, entry_id)
            else:
                batch.append((entry_id, fields))
        if batch:
            await self._process(stream, batch)

    # -- dead letters ------------------------------------------------------------------------

    async def _dead_letter(
        self,
        stream: str,
        entry_id: bytes,
        fields: dict[bytes, bytes],
        error: BaseException,
        retries: int,
    ) -> bool:
        """Move a message to the DLQ with why; whether it may be acknowledged (not without DLQ)."""
        if not self.config.enable_dlq:
            logger.error("message %s failed (%r); DLQ off, leaving it pending", entry_id, error)
            return False
        record = {key: value for key, value in fields.items() if not key.startswith(b"dlq_")}
        record.update(
            {
                b"dlq_original_id": entry_id,
                b"dlq_original_stream": stream.encode(),
                b"dlq_error_type": type(error).__name__.encode(),
                b"dlq_error": str(error).encode()[:2000],
                b"dlq_retries": str(retries).encode(),
            }
        )
        await self._client.xadd(self.config.dlq_stream, record)
        self._stats["messages_dead_lettered"] += 1
        logger.error("message %s moved to %s: %r", entry_id, self.config.dlq_stream, error)
        return True

    async def get_dlq_messages(self, limit: int = 100) -> list[DeadLetter]:
        await self.connect()
        entries = await self._client.xrange(self.config.dlq_stream, count=limit)
        return [_dead_letter(entry_id, fields) for entry_id, fields in entries]

    async def replay_dlq_message(self, message_id: str) -> bool:
        await self.connect()
        entries = await self._client.xrange(self.config.dlq_stream, message_id, message_id)
        if not entries:
            return False
        entry_id, fields = entries[0]
        original = {k: v for k, v in fields.items() if not k.startswith(b"dlq_")}
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.xadd(self.config.replay_stream, original)
            pipe.xdel(self.config.dlq_stream, entry_id)
            await pipe.execute()
        return True

    async def get_backlog(self) -> dict[str, int | None]:
        """``pending``: messages of this group's event and replay streams not yet acknowledged,
        both delivered ones in hand (the group's XPENDING count) and those not yet delivered
        (its lag; Redis 7+, left out where Redis cannot tell). ``dlq``: XLEN of the DLQ."""
        await self.connect()
        cfg = self.config
        pipe = self._client.pipeline(transaction=False)
        for stream in (cfg.stream, cfg.replay_stream):
            pipe.xinfo_groups(stream)
        pipe.xlen(cfg.dlq_stream)
        *infos, dlq = await pipe.execute(raise_on_error=False)
        pending = 0
        for groups in infos:
            if isinstance(groups, ResponseError):  # no stream yet: nothing waits there
                continue
            if isinstance(groups, BaseException):
                raise groups
            for group in groups:
                if group["name"].decode() == cfg.consumer_group:
                    pending += group["pending"] + (group.get("lag") or 0)
        if isinstance(dlq, BaseException):
            raise dlq
        return {"pending": pending, "dlq": dlq}

    @property
    def _client(self) -> Redis:
        assert self._redis is not None, "not connected"
        return self._redis


def _fields(event: DomainEvent) -> dict[str, str | bytes]:
    return {
        "event_type": event.event_type,
        "event_id": str(event.event_id),
        "aggregate_id": str(event.aggregate_id),
        "data": wire.encode(event),
    }


def _dead_letter(entry_id: bytes, fields: dict[bytes, bytes]) -> DeadLetter:
    def text(key: bytes) -> str:
        return fields.get(key, b"").decode(errors="replace")

    return DeadLetter(
        id=entry_id.decode(),
        original_id=text(b"dlq_original_id"),
        event_type=text(b"event_type") or None,
        error_type=text(b"dlq_error_type"),
        error=text(b"dlq_error"),
        retries=int(text(b"dlq_retries") or 0),
        body=fields.get(b"data", b""),
    )
