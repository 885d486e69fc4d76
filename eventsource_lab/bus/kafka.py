"""KafkaEventBus: events on a partitioned Kafka topic, consumer groups for load sharing and fan-out.

Layout for ``topic_prefix="app"`` and group ``g``: every event goes to ``app.events``, keyed by
its aggregate id, so one aggregate's events share a partition and keep their order. Messages
that keep failing go to ``app.g.dlq``; a replayed dead letter goes to ``app.g.replay``, which
only group ``g`` reads, so replaying never disturbs other groups. The bus creates missing topics
when it connects.

The DLQ is a table keyed by where a message came from (``topic:partition:offset``, the dead
letter's id): replaying one writes a tombstone (same key, no value) after it, so a listing that
reads the topic from the start leaves it out, and a compacted topic drops both in time (see
``kafka_dlq`` for how it is read).

A commit that fails is logged and its offsets are committed with the next one (or retried when
the consumer is idle); one that fails because the group rebalanced is dropped, and those messages
come again to the partition's new owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import os
import re
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import aiokafka.errors
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    RequestTimedOutError,
    UnknownError,
)
from aiokafka.structs import ConsumerRecord
from pydantic import Field, model_validator

from ..errors import BusConnectionError, BusError
from ..events import DomainEvent, EventRegistry
from . import kafka_dlq, kafka_log, wire
from .broker import BrokerBusConfig, BrokerEventBus, DeadLetter
from .handlers import Handler, as_subscriber
from .kafka_partitioner import partition_for
from .metrics import BusMetrics
from .retry import RECONNECT

__all__ = ["KafkaEventBus", "KafkaEventBusConfig", "RebalanceListener"]

logger = logging.getLogger("eventsource_lab.bus.kafka")

_LOST = (KafkaConnectionError, KafkaTimeoutError, RequestTimedOutError, OSError)
_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")
_POLL_MS = 500  # how long one poll waits for messages when there are none
# How long the broker may hold a fetch that finds nothing. Kafka answers as soon as messages
# arrive; tansu only when this runs out, so it is the delivery latency there.
_FETCH_WAIT_MS = 100
_MAX_REQUEST_SIZE = 1_048_576  # aiokafka's default, and Kafka's default message.max.bytes
_TOPIC_EXISTS = 36  # CreateTopics error code: TOPIC_ALREADY_EXISTS
_RETRIABLE = tuple(
    error
    for error in vars(aiokafka.errors).values()
    if inspect.isclass(error) and issubclass(error, KafkaError) and error.retriable
)  # the errors aiokafka itself would retry: a lost connection, a moving coordinator or leader


RebalanceListener = Callable[[frozenset[int], frozenset[int], str], None]
"""Called as ``listener(assigned, revoked, consumer_name)`` with partitions of the events topic."""


def _default_bootstrap() -> str:
    return os.environ.get("EVENTSOURCE_LAB_KAFKA_BOOTSTRAP", "localhost:9092")


class KafkaEventBusConfig(BrokerBusConfig):
    """Settings for :class:`KafkaEventBus`.

    Args:
        bootstrap_servers: ``host:port[,host:port]`` (default: ``$EVENTSOURCE_LAB_KAFKA_BOOTSTRAP``
            or localhost).
        topic_prefix: prefix of every topic the bus uses.
        enable_metrics: record counters and durations through OpenTelemetry (if installed).
        partitions: partitions of the events topic when the bus creates it; consumers of one
            group share the work at most this many ways.
        acks: how many replicas confirm a write before publish returns (``"all"``, 1 or 0).
        linger_ms: how long the producer waits to fill a batch.
        max_batch_size: most bytes of one record batch (one partition's share of a request);
            a publish of many events sends fewer, larger batches when this is larger.
        compression_type: ``None``, ``"gzip"``, ``"snappy"``, ``"lz4"`` or ``"zstd"``.
        auto_offset_reset: where a group with no committed offsets starts: ``"latest"`` (events
            published after it joined; on tansu, whose end offsets can lag, maybe a few before)
            or ``"earliest"`` (the whole topic).
        batch_size: most messages handled (and committed) per poll.
        session_timeout_ms: a consumer silent this long is presumed dead and its partitions go
            to the others; 6,000 is the least Kafka accepts by default (tansu holds every group
            join for half of it, so shorter is faster there).
        request_timeout_ms: give up on an unanswered request, connecting included, after this.
    """

    bootstrap_servers: str = Field(default_factory=_default_bootstrap, min_length=1)
    topic_prefix: str = Field("events", min_length=1)
    enable_metrics: bool = False
    partitions: int = Field(4, ge=1)
    acks: Literal["all", 1, 0] = "all"
    linger_ms: int = Field(0, ge=0)
    max_batch_size: int = Field(16_384, ge=1, le=_MAX_REQUEST_SIZE)
    compression_type: Literal["gzip", "snappy", "lz4", "zstd"] | None = None
    auto_offset_reset: Literal["latest", "earliest"] = "latest"
    batch_size: int = Field(500, ge=1)
    session_timeout_ms: int = Field(6_000, ge=100)
    request_timeout_ms: int = Field(10_000, ge=100)

    @model_validator(mode="after")
    def _valid_topic_names(self) -> KafkaEventBusConfig:
        for topic in (self.topic, self.dlq_topic, self.replay_topic):
            if not _TOPIC_NAME.fullmatch(topic):
                raise ValueError(
                    f"{topic!r} is no valid Kafka topic name: topic_prefix and consumer_group "
                    f"may use only letters, digits, '.', '_' and '-'"
                )
        return self

    @property
    def topic(self) -> str:
        return f"{self.topic_prefix}.events"

    @property
    def dlq_topic(self) -> str:
        return f"{self.topic_prefix}.{self.consumer_group}.dlq"

    @property
    def replay_topic(self) -> str:
        return f"{self.topic_prefix}.{self.consumer_group}.replay"


class KafkaEventBus(BrokerEventBus):
    """Publishes keyed by aggregate id; consumes in a consumer group, committing a partition's
    offset only once its messages were handled or dead-lettered.

    After a rebalance, messages a consumer had handled but not yet committed come again to the
    partition's new owner. Kafka keeps no delivery count, so the bus cannot tell those from
    first deliveries: ``messages_recovered`` stays 0 here.

    Args:
        meter_provider: an OpenTelemetry ``MeterProvider`` for the metrics (default: global).
    """

    config: KafkaEventBusConfig

    TRANSIENT = (
        *BrokerEventBus.TRANSIENT,
        *_RETRIABLE,
        KafkaTimeoutError,
        CommitFailedError,  # the group rebalanced under a commit
        IllegalStateError,  # the consumer touched a partition a rebalance took away
    )

    def __init__(
        self,
        config: KafkaEventBusConfig | None = None,
        event_registry: EventRegistry | None = None,
        *,
        meter_provider: Any = None,
        **options: Any,
    ) -> None:
        super().__init__(config or KafkaEventBusConfig(), event_registry, **options)
        self._producer: AIOKafkaProducer | None = None
        self._kafka_consumer: AIOKafkaConsumer | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._committing: asyncio.Future[None] | None = None
        self._uncommitted: dict[TopicPartition, int] = {}  # what a failed commit left
        self._dlq_offsets: dict[str, int] = {}  # where letters seen are in the DLQ, by id
        self._assigned = asyncio.Event()
        self._owned: frozenset[int] = frozenset()  # partitions of the events topic held now
        self._rebalance_listeners: tuple[RebalanceListener, ...] = ()
        self._lost_log = False  # the broker lost this bus's topics: the consumer starts again
        self._new_log = False  # and reads the recreated topics from their start
        self._metrics = BusMetrics(
            {
                "messaging.system": "kafka",
                "messaging.destination.name": self.config.topic,
                "messaging.consumer.group.name": self.config.consumer_group,
            },
            enabled=self.config.enable_metrics,
            meter_provider=meter_provider,
        )

    # -- connection --------------------------------------------------------------------------

    async def _connect(self) -> None:
        cfg = self.config
        producer = AIOKafkaProducer(
            bootstrap_servers=cfg.bootstrap_servers,
            client_id=cfg.consumer_name,
            acks=cfg.acks,
            linger_ms=cfg.linger_ms,
            max_batch_size=cfg.max_batch_size,
            compression_type=cfg.compression_type,
            request_timeout_ms=cfg.request_timeout_ms,
            max_request_size=_MAX_REQUEST_SIZE,
        )
        await self._start(producer)
        try:
            await self._create_topics()
        except BaseException:
            await producer.stop()
            raise
        self._producer = producer

    async def _disconnect(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def _start(self, client: Any) -> None:
        """Start an aiokafka client; a broker that does not answer is a BusConnectionError.
        A client that does not start (cancelled midway too) is stopped, so no connection of
        it stays open."""
        try:
            await asyncio.wait_for(client.start(), self.config.request_timeout_ms / 1000)
        except BaseException as exc:
            await (client.close() if isinstance(client, AIOKafkaAdminClient) else client.stop())
            if isinstance(exc, (*_LOST, asyncio.TimeoutError)):
                raise BusConnectionError(
                    f"cannot reach Kafka at {self.config.bootstrap_servers}: {exc or 'timed out'}"
                ) from exc
            raise

    async def _create_topics(self) -> None:
        """Create the events, DLQ and replay topics unless they exist (left as they are then)."""
        cfg = self.config
        admin = AIOKafkaAdminClient(
            bootstrap_servers=cfg.bootstrap_servers, request_timeout_ms=cfg.request_timeout_ms
        )
        await self._start(admin)
        try:
            response = await admin.create_topics(
                [
                    NewTopic(cfg.topic, cfg.partitions, 1),
                    NewTopic(cfg.dlq_topic, 1, 1, topic_configs={"cleanup.policy": "compact"}),
                    NewTopic(cfg.replay_topic, 1, 1),
                ]
            )
        except KafkaError as exc:
            raise BusError(f"cannot create the Kafka topics: {exc}") from exc
        finally:
            await admin.close()
        for topic, code, message in response.topic_errors:
            if code not in (0, _TOPIC_EXISTS):
                raise BusError(f"cannot create Kafka topic {topic!r}: error {code}: {message}")

    # -- publishing --------------------------------------------------------------------------

    async def _send(self, events: list[DomainEvent]) -> None:
        """Send and wait for every ack. A broker error that may pass (stale metadata after a
        broker restart, a moved leader, tansu's UnknownError for a topic it lost) makes the topics
        be created again and the batch be sent again, until ``publish_timeout`` ends it: at least
        once, a repeated event keeps its ``event_id``."""
        begin = time.perf_counter()
        for attempt in itertools.count():
            try:
                await asyncio.gather(*await self._send_batches(events))
                break
            except _LOST as exc:
                raise BusConnectionError(f"publishing to Kafka failed: {exc}") from exc
            except KafkaError as exc:
                if not (exc.retriable or isinstance(exc, UnknownError)):
                    raise BusError(f"publishing to Kafka failed: {exc}") from exc
                delay = RECONNECT.delay(attempt)
                logger.warning("publishing to Kafka hit %r; sending again in %.1fs", exc, delay)
                with contextlib.suppress(KafkaError, BusError):
                    await self._create_topics()  # before a send: tansu keeps what comes after
                await asyncio.sleep(delay)
        self._metrics.add("published", len(events))
        self._metrics.record("publish", time.perf_counter() - begin)

    async def _send_batches(self, events: list[DomainEvent]) -> list[asyncio.Future[Any]]:
        """Hand ``events`` to the producer as one record batch per partition (another where a
        batch fills up), in order; return the futures of their acknowledgements.

        Each event goes where ``send(key=aggregate id)`` would put it, Kafka's own rule, but a
        batch costs a fraction of a ``send()`` per event. The loop runs once per event of a
        large list, so it keeps to locals and makes no dict or call it can do without."""
        producer, topic = self._client, self.config.topic
        partitions = sorted(await producer.partitions_for(topic))
        encode, headers_of, partition_of = wire.encode, _headers, partition_for
        key_of = _uuid_text
        batches: dict[int, Any] = {}  # partition -> aiokafka BatchBuilder being filled
        sent = []
        for event in events:
            key, value, headers = key_of(event.aggregate_id), encode(event), headers_of(event)
            partition = partition_of(key, partitions)
            batch = batches.get(partition)
            if (
                batch is not None
                and batch.append(key=key, value=value, timestamp=None, headers=headers) is not None
            ):
                continue
            if batch is not None:  # full: send it, start the next
                sent.append(await producer.send_batch(batch, topic, partition=partition))
            if len(value) > _MAX_REQUEST_SIZE:  # alone in a batch, it would go
                raise BusError(
                    f"event {event.event_id} is {len(value):,} bytes encoded; a Kafka "
                    f"request may carry {_MAX_REQUEST_SIZE:,}"
                )
            batch = batches[partition] = producer.create_batch()
            batch.append(key=key, value=value, timestamp=None, headers=headers)  # always fits
        for partition, batch in batches.items():
            sent.append(await producer.send_batch(batch, topic, partition=partition))
        return sent

    # -- consuming ---------------------------------------------------------------------------

    async def _consume(self) -> None:
        cfg = self.config
        consumer = AIOKafkaConsumer(
            bootstrap_servers=cfg.bootstrap_servers,
            group_id=cfg.consumer_group,
            client_id=cfg.consumer_name,
            enable_auto_commit=False,
            auto_offset_reset="earliest" if self._new_log else cfg.auto_offset_reset,
            max_poll_records=cfg.batch_size,
            session_timeout_ms=cfg.session_timeout_ms,
            heartbeat_interval_ms=max(50, cfg.session_timeout_ms // 10),
            fetch_max_wait_ms=_FETCH_WAIT_MS,
            request_timeout_ms=cfg.request_timeout_ms,
        )
        await self._start(consumer)
        self._kafka_consumer = consumer
        self._lost_log = False
        try:
            consumer.subscribe([cfg.topic, cfg.replay_topic], listener=_Rebalance(self))
            lost = 0
            while not self._stopping:
                self._raise_if_cancelled()
                if self._lost_log:
                    raise BusConnectionError("the broker lost this bus's topics: consuming again")
                try:
                    batches = await consumer.getmany(timeout_ms=_POLL_MS)
                    if self._lost_log:
                        continue  # read where the lost log was: the next consumer reads anew
                    if lost:
                        lost = 0
                        self._stats["reconnections"] += 1
                        logger.info("Kafka consumer works again")
                    if batches:
                        await self._process(batches)
                    elif self._uncommitted:
                        await self._flush()
                        self._commit_soon(consumer, {})
                except _RETRIABLE as exc:
                    logger.warning("Kafka error (%r); retrying", exc)
                    await asyncio.sleep(RECONNECT.delay(lost))
                    lost += 1
        finally:
            self._kafka_consumer = None
            try:
                await self._leave(consumer)
            finally:  # out of the group, or about to be: what it held is no longer its
                self._rebalanced(set(), {TopicPartition(cfg.topic, p) for p in self._owned})

    @property
    def assigned_partitions(self) -> frozenset[int]:
        """The partitions of the events topic this consumer holds now (none when not consuming)."""
        return self._owned

    def on_rebalance(self, listener: RebalanceListener) -> Callable[[], None]:
        """Call ``listener(assigned, revoked, consumer_name)`` whenever this consumer gets or
        gives up partitions of the events topic (a rebalance, or leaving the group on stop), so a
        view can show who owns what; returns a function that removes it. With Kafka's eager
        rebalancing a consumer first gives up all it held, then gets its new share."""
        self._rebalance_listeners = (*self._rebalance_listeners, listener)

        def remove() -> None:
            self._rebalance_listeners = tuple(
                x for x in self._rebalance_listeners if x is not listener
            )

        return remove

    def _rebalanced(self, assigned: set[TopicPartition], revoked: set[TopicPartition]) -> None:
        """Track the events topic's partitions held and tell the rebalance listeners."""
        topic = self.config.topic
        gained = frozenset(tp.partition for tp in assigned if tp.topic == topic)
        lost = frozenset(tp.partition for tp in revoked if tp.topic == topic) & self._owned
        if not gained and not lost:
            return
        self._owned = (self._owned - lost) | gained
        for listener in self._rebalance_listeners:
            try:
                listener(gained, lost, self.config.consumer_name)
            except Exception:
                logger.exception("rebalance listener %r failed", listener)

    async def committed_offsets(self) -> dict[int, int | None]:
        """The group's committed offset of each partition of the events topic (``None``: none
        committed yet), read by a consumer that never joins the group, so no rebalance follows.
        The bus connects only to create a topic not there yet: a bus shut down is not reopened.
        """
        topic = self.config.topic
        reader = await self._start_reader(group_id=self.config.consumer_group)
        try:
            timeout = self.config.request_timeout_ms / 1000
            await asyncio.wait_for(reader.topics(), timeout)  # the metadata: its partitions
            if (partitions := reader.partitions_for_topic(topic)) is None:
                await self.connect()
                partitions = await self._client.partitions_for(topic)
            return {
                p: await asyncio.wait_for(reader.committed(TopicPartition(topic, p)), timeout)
                for p in sorted(partitions)
            }
        except (KafkaError, asyncio.TimeoutError) as exc:
            raise BusError(f"reading the committed offsets of {topic} failed: {exc!r}") from exc
        finally:
            await reader.stop()

    async def _partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        """Commit where each new partition starts, so the group keeps that starting point even
        if the partition moves before a message arrives; then the consumer is ready."""
        consumer = self._kafka_consumer
        if consumer is not None and assigned:
            if await self._topics_lost(consumer):
                consumer.pause(*assigned)  # its positions are in the lost log: read nothing
                return
            starts = {tp: await consumer.position(tp) for tp in assigned}
            await self._commit(consumer, starts)
            if self._new_log and not self._uncommitted:
                self._new_log = False
                self._stats["reconnections"] += 1
                logger.info("consuming the recreated topics from their start")
        logger.info("assigned %s", sorted(f"{tp.topic}:{tp.partition}" for tp in assigned))
        self._assigned.set()
        self._consuming_ready()

    async def _leave(self, consumer: AIOKafkaConsumer) -> None:
        """Leave the group, but not in the middle of a rebalance.

        tansu keeps a member that leaves while the group waits for it to rejoin as the group's
        leader for good, and then no later join of that group ever completes. So first one
        heartbeat (aiokafka has no public call for it): if the group is rebalancing, rejoin,
        then leave. On Kafka this costs one round trip. The consumer is stopped whatever fails.
        """
        try:
            await self._flush()
            if self._uncommitted:
                await self._commit(consumer, {})
            coordinator = consumer._coordinator
            if coordinator is not None and coordinator.generation > 0:
                self._assigned.clear()
                with contextlib.suppress(KafkaError):
                    await coordinator._do_heartbeat()
                if coordinator._rejoin_needed_fut.done():
                    with contextlib.suppress(asyncio.TimeoutError):
                        timeout = self.config.session_timeout_ms / 1000
                        await asyncio.wait_for(self._assigned.wait(), timeout)
        finally:
            self._uncommitted.clear()
            await consumer.stop()

    async def _partitions_revoked(self) -> None:
        """Let the batch in hand finish and commit before the partitions move to others."""
        try:
            await asyncio.wait_for(self._idle.wait(), self.config.session_timeout_ms / 1000)
            await self._flush()
            if self._uncommitted and (consumer := self._kafka_consumer) is not None:
                await self._commit(consumer, {})
        except asyncio.TimeoutError:
            logger.warning("rebalancing with a batch still in hand: it will be delivered again")
        self._uncommitted.clear()  # the partitions may go to others: theirs to commit now

    async def _process(self, batches: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """Handle each partition's messages in order (partitions concurrently), then commit."""
        self._busy = True
        self._idle.clear()
        try:
            done = await asyncio.gather(*(self._process_partition(r) for r in batches.values()))
            offsets = {tp: n for tp, n in zip(batches, done, strict=True) if n is not None}
            if offsets and (consumer := self._kafka_consumer) is not None:
                self._uncommitted.update(offsets)  # newer offsets win
                if self._committing is None or self._committing.done():
                    # One commit in flight at a time, so they land in order; what the batches
                    # handled meanwhile goes with the next one, not a commit per batch.
                    self._commit_soon(consumer, {})
        finally:
            self._busy = False
            self._idle.set()

    async def _process_partition(self, records: list[ConsumerRecord]) -> int | None:
        """Handle one partition's messages in order; the offset to commit (None: nothing done).

        A message that can be neither handled nor dead-lettered stops its partition: the
        consumer seeks back to it, so it comes again after a pause and nothing behind it skips it.
        """
        committable = None
        for record in records:
            if not await self._handle(record):
                tp = TopicPartition(record.topic, record.partition)
                if self._kafka_consumer is not None:
                    self._kafka_consumer.seek(tp, record.offset)
                await asyncio.sleep(self._handler_retry.delay(self.config.max_retries))
                break
            committable = record.offset + 1
        return committable

    async def _handle(self, record: ConsumerRecord) -> bool:
        """Process one message; whether it may be committed."""
        self._stats["events_consumed"] += 1
        self._metrics.add("consumed")
        try:
            event = self._decode(record.value, _event_type(record))
        except wire.DecodeError as exc:
            self._stats["events_failed"] += 1
            self._metrics.add("failed")
            return await self._dead_letter(record, exc, retries=0)
        if self._metrics.enabled:
            begin = time.perf_counter()
            failures = await self._deliver(event)
            self._metrics.record("handler", time.perf_counter() - begin)
        else:
            failures = await self._deliver(event)
        if not failures:
            self._metrics.add("processed")
            return True
        self._metrics.add("failed")
        return await self._dead_letter(record, failures[0].error, retries=self.config.max_retries)

    def _commit_soon(self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
        """Commit in the background, while the next batch is fetched (none may be in flight)."""
        self._committing = asyncio.ensure_future(self._commit(consumer, offsets))

    async def _flush(self) -> None:
        """Wait for the commit in flight; shielded, so a caller cancelled here cancels only
        its own wait, never the commit that the consumer loop waits for too."""
        if self._committing is not None:
            await asyncio.shield(self._committing)

    async def _commit(self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
        """Commit ``offsets`` and any a failed commit left; never raises a Kafka error.

        aiokafka retries a commit to a partition the broker does not know for ever, so one
        unanswered for ``session_timeout_ms`` fails here and the topics are checked."""
        offsets, self._uncommitted = {**self._uncommitted, **offsets}, {}
        if not offsets or self._lost_log:
            return  # offsets in a lost log mean nothing in the recreated one
        try:
            await asyncio.wait_for(consumer.commit(offsets), self.config.session_timeout_ms / 1000)
        except (CommitFailedError, IllegalStateError) as exc:  # the group rebalanced
            logger.warning("commit failed (%s): these messages will be delivered again", exc)
        except (KafkaError, asyncio.TimeoutError) as exc:
            if self._lost_log or (
                isinstance(exc, asyncio.TimeoutError) and await self._topics_lost(consumer)
            ):
                return
            logger.warning("commit failed (%r): committing these offsets again next", exc)
            self._uncommitted = {**offsets, **self._uncommitted}  # newer offsets win

    async def _topics_lost(self, consumer: AIOKafkaConsumer) -> bool:
        """Whether the broker lost this bus's topics (a restart without its data, as tansu's);
        if so, create them again with the bus's settings and have the consumer start again.

        A broker that keeps its log (Kafka) keeps topics and offsets: consuming simply goes on.
        One that lost it has only events published since, so the next consumer reads from the
        start of the recreated topics, whatever ``auto_offset_reset`` says.
        """
        try:
            timeout = self.config.request_timeout_ms / 1000
            topics = await asyncio.wait_for(consumer.topics(), timeout)
        except (KafkaError, asyncio.TimeoutError):
            return False  # unreachable: nothing known lost
        if {self.config.topic, self.config.replay_topic} <= topics:
            return False
        logger.warning("the broker lost this bus's topics (restarted without its data?)")
        self._lost_log = self._new_log = True
        self._uncommitted.clear()
        try:
            await self._create_topics()
        except BusError as exc:  # the broker creates them on use; the next check tries again
            logger.warning("cannot create the lost topics again: %s", exc)
        return True

    # -- replay ------------------------------------------------------------------------------

    async def replay(
        self,
        *,
        from_beginning: bool = False,
        since: datetime | None = None,
        positions: Mapping[int, int] | None = None,
    ) -> dict[int, int]:
        """Re-read this consumer's partitions of the events topic from the start, from the
        first event published at or after ``since``, or from ``positions`` (``{partition:
        offset}``); return ``{partition: offset}`` sought.

        The new positions are committed, so the group keeps replaying even if a partition moves
        to another consumer. With ``since`` a partition never skips ahead: one whose unread
        events are all older stays where it is. ``positions`` are taken as asked, ahead too;
        partitions another consumer of the group owns are left out (and of the result). An
        unknown partition or an offset outside a partition's log is a ValueError. Other groups
        are not affected; to read without any group, use :meth:`read` or :meth:`replay_to`.
        """
        if from_beginning + (since is not None) + (positions is not None) != 1:
            raise ValueError(
                "replay() takes either from_beginning=True or since=<datetime> or "
                "positions={partition: offset}"
            )
        consumer = self._kafka_consumer
        if consumer is None:
            raise BusError("replay() moves this consumer's partitions: start_consuming() first")
        tps = [tp for tp in consumer.assignment() if tp.topic == self.config.topic]
        try:
            if positions is not None:
                reader = await self._start_reader()
                try:
                    asked = await self._spans(reader, positions)
                finally:
                    await reader.stop()
                targets = {tp: asked[tp].start for tp in tps if tp in asked}
            elif since is None:
                targets = await consumer.beginning_offsets(tps)
            else:
                found = await consumer.offsets_for_times(
                    dict.fromkeys(tps, int(since.timestamp() * 1000))
                )
                # No event since then: None on Kafka, an offset with timestamp -1 on tansu.
                targets = {
                    tp: min(hit.offset, await consumer.position(tp))
                    for tp, hit in found.items()
                    if hit is not None and hit.timestamp >= 0
                }
            await self._idle.wait()  # no batch in hand: its commit would undo the seek
            targets = {tp: n for tp, n in targets.items() if tp in consumer.assignment()}
            for tp, offset in targets.items():
                consumer.seek(tp, offset)
            await self._flush()
            await self._commit(consumer, targets)
        except KafkaError as exc:
            raise BusError(f"replay failed: {exc}") from exc
        start = positions if positions is not None else since or "the beginning"
        logger.info("replaying %s from %s", self.config.topic, start)
        return {tp.partition: offset for tp, offset in targets.items()}

    async def read(
        self,
        *,
        positions: Mapping[int, int] | None = None,
        aggregate_id: UUID | str | None = None,
    ) -> AsyncGenerator[DomainEvent, None]:
        """The events from ``positions`` (``{partition: offset}``) to the ends of those
        partitions as of the call, or every event of one aggregate (read from the partition
        ``publish`` keys it to), each partition in log order: to rebuild a projection from
        offset N, or one aggregate's history. ``async for event in bus.read(positions={0: 120})``.

        The reader joins no group and commits nothing, so the live group's offsets and members
        stay as they are. An unknown partition, an offset outside a partition's log or an
        ``aggregate_id`` that is no UUID is a ValueError; a message that does not decode is logged
        and skipped (the group's consumer dead-letters it).
        """
        if (positions is None) == (aggregate_id is None):
            raise ValueError("read() takes either positions={partition: offset} or aggregate_id")
        try:  # the key as publish writes it: the canonical form of the id
            key = None if aggregate_id is None else str(UUID(str(aggregate_id))).encode()
        except ValueError:
            raise ValueError(f"aggregate_id {aggregate_id!r} is not a UUID") from None
        await self.connect()
        reader = await self._start_reader()
        try:
            if key is not None:
                partitions = sorted(await self._client.partitions_for(self.config.topic))
                tp = TopicPartition(self.config.topic, partition_for(key, partitions))
                positions = {tp.partition: (await reader.beginning_offsets([tp]))[tp]}
            spans = await self._spans(reader, positions)
            timeout = self.config.request_timeout_ms / 1000
            records = kafka_log.records(reader, spans, timeout)
            async with contextlib.aclosing(records):
                async for record in records:
                    if key is not None and record.key != key:
                        continue
                    try:
                        event = self._decode(record.value, _event_type(record))
                    except wire.DecodeError as exc:
                        where = _position(record)
                        logger.warning("skipping %s, which does not decode: %s", where, exc)
                        continue
                    yield event
        except KafkaError as exc:
            raise BusError(f"reading {self.config.topic} failed: {exc}") from exc
        finally:
            await reader.stop()

    async def replay_to(
        self,
        handler: Handler,
        *,
        positions: Mapping[int, int] | None = None,
        aggregate_id: UUID | str | None = None,
    ) -> int:
        """Call ``handler`` (a function or an object with ``handle``, sync or async) with each
        event :meth:`read` gives, one at a time, in order; return how many. No group is
        involved. A handler that raises ends the replay with its error."""
        call = as_subscriber(handler).call
        count = 0
        async with contextlib.aclosing(
            self.read(positions=positions, aggregate_id=aggregate_id)
        ) as events:
            async for event in events:
                if inspect.isawaitable(result := call(event)):
                    await result
                count += 1
        return count

    async def _spans(
        self, reader: AIOKafkaConsumer, positions: Mapping[int, int]
    ) -> dict[TopicPartition, range]:
        """What to read from ``positions`` of the events topic to each partition's end."""
        await self.connect()
        known = await self._client.partitions_for(self.config.topic)
        timeout = self.config.request_timeout_ms / 1000
        return await kafka_log.spans(reader, self.config.topic, known, positions, timeout)

    # -- dead letters ------------------------------------------------------------------------

    async def _dead_letter(
        self, record: ConsumerRecord, error: BaseException, retries: int
    ) -> bool:
        """Move a message to the DLQ with why; whether it may be committed (not without DLQ)."""
        source = _position(record)
        if not self.config.enable_dlq:
            logger.error("message %s failed (%r); DLQ off, not committing it", source, error)
            return False
        headers = [(k, v) for k, v in record.headers if not k.startswith("dlq.")]
        if record.key is not None:
            headers.append(("dlq.original_key", record.key))
        headers += [
            ("dlq.original_topic", record.topic.encode()),
            ("dlq.original_partition", str(record.partition).encode()),
            ("dlq.original_offset", str(record.offset).encode()),
            ("dlq.error_type", type(error).__name__.encode()),
            ("dlq.error", str(error).encode()[:2000]),
            ("dlq.retries", str(retries).encode()),
        ]
        try:
            written = await self._client.send_and_wait(
                self.config.dlq_topic,
                record.value or b"",
                key=source.encode(),
                headers=headers,
                partition=0,
            )
        except KafkaError as exc:
            logger.error("cannot dead-letter %s (%r); not committing it", source, exc)
            return False
        self._dlq_offsets[source] = written.offset
        self._stats["messages_dead_lettered"] += 1
        self._metrics.add("dead_lettered")
        logger.error("message %s moved to %s: %r", source, self.config.dlq_topic, error)
        return True

    async def get_dlq_messages(self, limit: int = 100) -> list[DeadLetter]:
        letters = await kafka_dlq.live_letters(await self._read_dlq())
        self._dlq_offsets.update((key, record.offset) for key, record in letters.items())
        return [_dead_letter(key, record) for key, record in list(letters.items())[:limit]]

    async def replay_dlq_message(self, message_id: str) -> bool:
        """Move one dead letter to this group's replay topic; the DLQ is read from where the
        letter is, if this bus has seen it, else from the start."""
        start = self._dlq_offsets.get(message_id, 0)
        record, seen = await kafka_dlq.find_letter(await self._read_dlq(start), message_id)
        if not seen and start:  # the DLQ changed under what we knew (a broker restart)
            record, _ = await kafka_dlq.find_letter(await self._read_dlq(), message_id)
        if record is None:
            self._dlq_offsets.pop(message_id, None)
            return False
        headers = [(k, v) for k, v in record.headers if not k.startswith("dlq.")]
        key = _header(record, "dlq.original_key")
        try:
            await self._client.send_and_wait(
                self.config.replay_topic, record.value, key=key, headers=headers
            )
            await self._client.send_and_wait(
                self.config.dlq_topic, None, key=message_id.encode(), partition=0
            )
        except KafkaError as exc:
            raise BusError(f"replaying dead letter {message_id} failed: {exc}") from exc
        self._dlq_offsets.pop(message_id, None)
        return True

    async def _read_dlq(self, offset: int = 0) -> AsyncGenerator[ConsumerRecord, None]:
        """The DLQ's records from ``offset`` up to its end as of now."""
        await self.connect()
        timeout = self.config.request_timeout_ms / 1000
        return kafka_dlq.read(
            self._client, self._start_reader, self.config.dlq_topic, offset, timeout
        )

    async def _start_reader(self, group_id: str | None = None) -> AIOKafkaConsumer:
        """A consumer that joins no group (``group_id`` only names whose offsets it may read)."""
        reader = AIOKafkaConsumer(
            bootstrap_servers=self.config.bootstrap_servers,
            group_id=group_id,
            enable_auto_commit=False,
            fetch_max_wait_ms=_FETCH_WAIT_MS,
            request_timeout_ms=self.config.request_timeout_ms,
        )
        await self._start(reader)
        return reader

    @property
    def _client(self) -> AIOKafkaProducer:
        assert self._producer is not None, "not connected"
        return self._producer


class _Rebalance(ConsumerRebalanceListener):
    """Hands aiokafka's rebalance callbacks to the bus."""

    def __init__(self, bus: KafkaEventBus) -> None:
        self._bus = bus

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._bus._partitions_revoked()
        self._bus._rebalanced(set(), revoked)  # once committed: the offsets shown are final

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._bus._partitions_assigned(assigned)
        self._bus._rebalanced(assigned, set())


_CONTENT_TYPE = wire.CONTENT_TYPE.encode()


def _headers(event: DomainEvent) -> list[tuple[str, bytes]]:
    return [
        ("event_type", event.event_type.encode()),
        ("event_id", _uuid_text(event.event_id)),
        ("content-type", _CONTENT_TYPE),
    ]


def _uuid_text(value: UUID) -> bytes:
    """``str(value).encode()`` (the 8-4-4-4-12 hex form) in less than half its time: a key and
    a header per event make it one of the larger costs of publishing."""
    h = value.bytes.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}".encode()


def _header(record: ConsumerRecord, name: str) -> bytes | None:
    for key, value in record.headers:
        if key == name:
            return value
    return None


def _event_type(record: ConsumerRecord) -> str | None:
    """The type header's text; a message without a value or with a type not in UTF-8 is
    malformed."""
    if record.value is None:
        raise wire.MalformedMessageError("message has no value")
    type_header = _header(record, "event_type")
    try:
        return type_header.decode() if type_header is not None else None
    except UnicodeDecodeError as exc:
        raise wire.MalformedMessageError(
            f"event_type header is not UTF-8: {type_header!r}"
        ) from exc


def _position(record: ConsumerRecord) -> str:
    return f"{record.topic}:{record.partition}:{record.offset}"


def _dead_letter(key: str, record: ConsumerRecord) -> DeadLetter:
    def text(name: str) -> str:
        return (_header(record, name) or b"").decode(errors="replace")

    return DeadLetter(
        id=key,
        original_id=key,
        event_type=text("event_type") or None,
        error_type=text("dlq.error_type"),
        error=text("dlq.error"),
        retries=int(text("dlq.retries") or 0),
        body=record.value or b"",
    )
