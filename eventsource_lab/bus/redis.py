"""RedisEventBus: events on a Redis Stream, consumer groups for load sharing and fan-out.

Layout for ``stream_prefix="app"`` and group ``g``: every event goes to the stream
``app:events``; messages that keep failing go to ``app:g:dlq``; a replayed dead letter goes to
``app:g:replay``, which only group ``g`` reads, so replaying never disturbs other groups.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from typing import Any

from pydantic import Field
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import BusyLoadingError, OutOfMemoryError, RedisError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..errors import BusConnectionError, BusError
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
    """Publishes with XADD; consumes with XREADGROUP, acknowledging a message once its handlers
    succeeded (or it was dead-lettered), keeping what it holds while handling (XCLAIM JUSTID),
    and taking over what dead consumers left pending (XAUTOCLAIM)."""

    config: RedisEventBusConfig

    TRANSIENT = (
        *BrokerEventBus.TRANSIENT,
        RedisConnectionError,
        RedisTimeoutError,
        BusyLoadingError,  # a restarted Redis still loading its data
        OutOfMemoryError,  # maxmemory reached: writes (XADD to the DLQ) fail until memory frees
    )

    def __init__(
        self,
        config: RedisEventBusConfig | None = None,
        event_registry: EventRegistry | None = None,
        **options: Any,
    ) -> None:
        super().__init__(config or RedisEventBusConfig(), event_registry, **options)
        self._redis: Redis | None = None  # publishing and callers' requests
        self._loop_redis: Redis | None = None  # the consumer loop's own connections
        self._in_hand: dict[str, dict[bytes, None]] = {}  # received, not yet handled
        self._acks: dict[str, list[bytes]] = {}  # handled, not yet acknowledged

    # -- connection --------------------------------------------------------------------------

    async def _connect(self) -> None:
        # A pooled connection may have died with a restarted server: the driver replaces it
        # and sends again (an XADD may so be stored twice, with the same event_id). The consumer
        # loop has no such retry: it sees the outage, backs off and counts the reconnection.
        # Both are checked here, so a wrong URL or password fails connect(), not the loop later.
        client = Redis.from_url(self.config.redis_url, retry=_RETRY)
        loop_client = Redis.from_url(self.config.redis_url)
        try:
            await client.ping()
            await loop_client.ping()
        except (RedisError, OSError) as exc:
            await client.aclose()
            await loop_client.aclose()
            raise BusConnectionError(
                f"cannot reach Redis at {redact_url(self.config.redis_url)}: {exc}"
            ) from exc
        self._redis, self._loop_redis = client, loop_client

    async def _disconnect(self) -> None:
        for client in (self._redis, self._loop_redis):
            if client is not None:
                await client.aclose()
        self._redis = self._loop_redis = None

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
        except RedisError as exc:  # out of memory, say
            raise BusError(f"Redis refused the events: {exc}") from exc

    # -- consuming ---------------------------------------------------------------------------

    async def _consume(self) -> None:
        await self._create_groups(start="$")
        self._consuming_ready()
        heartbeat = asyncio.get_running_loop().create_task(self._heartbeat())
        try:
            await self._consume_loop()
            await self._flush_acks()
        finally:
            heartbeat.cancel()
            self._in_hand.clear()
            self._busy = False

    async def _consume_loop(self) -> None:
        cfg = self.config
        streams = {cfg.stream: ">", cfg.replay_stream: ">"}
        loop = asyncio.get_running_loop()
        block = min(cfg.block_ms, max(1, cfg.pending_idle_ms // 2))
        next_recovery, lost = 0.0, 0
        while not self._stopping:
            self._raise_if_cancelled()
            try:
                if loop.time() >= next_recovery:
                    await self._recover()
                    next_recovery = loop.time() + cfg.pending_idle_ms / 2000
                self._busy = bool(self._acks)
                response = await self._read(streams, block)
                self._busy = bool(response)
                if lost:
                    lost = 0
                    self._stats["reconnections"] += 1
                    logger.info("reconnected to Redis")
                for stream, entries in response or ():
                    self._in_hand.setdefault(stream.decode(), {}).update(
                        dict.fromkeys(entry_id for entry_id, _ in entries)
                    )
                for stream, entries in response or ():
                    await self._process(stream.decode(), entries)
            except self.TRANSIENT as exc:
                await self._backoff(exc, lost)
                lost += 1
            except ResponseError as exc:
                if not str(exc).startswith(("NOGROUP", "UNBLOCKED")):
                    raise  # ends the loop, with the reason in consumer_error
                logger.warning("the stream or its group vanished (Redis restarted?); recreating")
                await self._create_groups(start="0")

    async def _backoff(self, exc: BaseException, failures: int) -> None:
        logger.warning("Redis error (%r); retrying", exc)
        self._in_hand.clear()  # what is left stays pending, to be taken over when idle
        self._busy = False
        await asyncio.sleep(RECONNECT.delay(failures))

    async def _read(self, streams: dict[str, str], block: int) -> Any:
        """The next batch; acknowledgements of the last one go in the same round trip (and
        the read does not block then, so a stop is never held up by an idle wait)."""
        cfg = self.config
        acks = self._take_acks()
        if not acks:
            return await self._reader.xreadgroup(
                cfg.consumer_group, cfg.consumer_name, streams, count=cfg.batch_size, block=block
            )
        pipe = self._reader.pipeline(transaction=False)
        for stream, ids in acks.items():
            pipe.xack(stream, cfg.consumer_group, *ids)
        pipe.xreadgroup(cfg.consumer_group, cfg.consumer_name, streams, count=cfg.batch_size)
        try:
            *_, response = await pipe.execute()
        except BaseException:
            self._return_acks(acks)
            raise
        return response

    def _take_acks(self) -> dict[str, list[bytes]]:
        acks, self._acks = self._acks, {}
        return acks

    def _return_acks(self, acks: dict[str, list[bytes]]) -> None:
        for stream, ids in acks.items():
            self._acks.setdefault(stream, []).extend(ids)

    async def _flush_acks(self) -> None:
        acks = self._take_acks()
        if acks:
            await self._send_acks(acks)

    async def _send_acks(
        self, acks: dict[str, list[bytes]], claims: dict[str, list[bytes]] | None = None
    ) -> None:
        """XACK what is done and, for each stream in ``claims``, reset the idle time of the
        messages still in hand, in one round trip; on failure the acks are kept for later."""
        cfg = self.config
        pipe = self._reader.pipeline(transaction=False)
        for stream, ids in acks.items():
            pipe.xack(stream, cfg.consumer_group, *ids)
        for stream, ids in (claims or {}).items():
            pipe.xclaim(stream, cfg.consumer_group, cfg.consumer_name, 0, ids, justid=True)
        try:
            await pipe.execute()
        except BaseException:
            self._return_acks(acks)
            raise

    async def _heartbeat(self) -> None:
        """While messages are in hand, claim them again every third of ``pending_idle_ms``
        (XCLAIM JUSTID resets their idle time without counting a delivery), so a live consumer
        with slow handlers is never taken for dead; acknowledge what is done on the way."""
        while True:
            await asyncio.sleep(self.config.pending_idle_ms / 3000)
            held = {stream: list(ids) for stream, ids in self._in_hand.items() if ids}
            acks = self._take_acks()
            if not held and not acks:
                continue
            try:
                await self._send_acks(acks, held)
            except Exception as exc:  # never let the heartbeat die while the loop runs
                logger.warning("could not renew the messages in hand (%r)", exc)

    async def _create_groups(self, start: str) -> None:
        for stream, first in ((self.config.stream, start), (self.config.replay_stream, "0")):
            try:
                await self._reader.xgroup_create(
                    stream, self.config.consumer_group, id=first, mkstream=True
                )
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def _process(self, stream: str, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        """Handle a batch from one stream in order; what is done is acknowledged with the next
        round trip to Redis, what is left when an error escapes stays pending."""
        self._busy = True
        in_hand = self._in_hand.setdefault(stream, {})
        in_hand.update(dict.fromkeys(entry_id for entry_id, _ in entries))
        try:
            for entry_id, fields in entries:
                if await self._handle(stream, entry_id, fields):
                    self._acks.setdefault(stream, []).append(entry_id)
                del in_hand[entry_id]
        finally:
            for entry_id, _ in entries:
                in_hand.pop(entry_id, None)

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
            event = self._decode(fields[b"data"], _event_type(fields))
        except wire.DecodeError as exc:
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
                start, claimed, *_ = await self._reader.xautoclaim(
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
                    await self._flush_acks()
                if start in (b"0-0", "0-0"):
                    break

    async def _process_recovered(self, stream: str, claimed: list[Any]) -> None:
        """Dead-letter messages delivered too often without an ack (they kill consumers);
        process the rest."""
        pending = await self._reader.xpending_range(
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
                self._acks.setdefault(stream, []).append(entry_id)
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
        await self._write_dead_letter(record)
        self._stats["messages_dead_lettered"] += 1
        logger.error("message %s moved to %s: %r", entry_id, self.config.dlq_stream, error)
        return True

    async def _write_dead_letter(self, record: dict[bytes, bytes]) -> None:
        """XADD to the DLQ, waiting out transient errors (Redis out of memory, say) with the
        message kept in hand, so it is neither lost nor taken over nor counted as redelivered."""
        for attempt in itertools.count():
            try:
                await self._reader.xadd(self.config.dlq_stream, record)
                return
            except self.TRANSIENT as exc:
                if self._stopping:
                    raise  # left pending: taken over once idle
                delay = RECONNECT.delay(attempt)
                logger.warning("cannot write to the DLQ (%r); again in %.1fs", exc, delay)
                await asyncio.sleep(delay)

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

    @property
    def _reader(self) -> Redis:
        assert self._loop_redis is not None, "not connected"
        return self._loop_redis


_RETRY = Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=3)
"""Resend a command whose connection died: once it is replaced, within about a second."""


def _fields(event: DomainEvent) -> dict[str, str | bytes]:
    return {
        "event_type": event.event_type,
        "event_id": str(event.event_id),
        "aggregate_id": str(event.aggregate_id),
        "data": wire.encode(event),
    }


def _event_type(fields: dict[bytes, bytes]) -> str | None:
    """The ``event_type`` field as text; a malformed message if it is no UTF-8."""
    raw = fields.get(b"event_type")
    try:
        return None if raw is None else raw.decode()
    except UnicodeDecodeError as exc:
        raise wire.MalformedMessageError(f"event_type field is not UTF-8: {raw!r:.100}") from exc


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
