"""RabbitMQEventBus: events through an exchange, one queue per consumer group.

Layout for ``exchange_name="app"`` and group ``g``: events are published to the exchange ``app``
with the routing key ``{aggregate_type}.{event_type}``. Group ``g`` consumes the queue ``app.g``,
bound to everything (key ``#``) unless :meth:`RabbitMQEventBus.bind_event_type` narrows it. A
direct exchange matches keys exactly, so there every message also carries the key ``#`` in its
``BCC`` header (RabbitMQ's sender-selected distribution).

A message whose handlers fail is not retried in place: a copy waits in ``app.g.retry`` for its
backoff (a per-message TTL) and is then dead-lettered back into ``app.g``, so the consumer moves
on at once and only group ``g`` sees the retry (behind the events published meanwhile). After
``max_retries`` it goes to ``app.g.dlq`` with the reason in its headers.

A retry may be taken by another consumer of the group, in another process, so it names the
subscribers that failed by a key both can compute: the handler's name and its position among
same-named subscribers of that event type (``Counter#0``, ``Counter#1``, ``<lambda>#0``). Consumers
of a group that subscribe the same handlers in the same order agree on every key.

On a cluster, give every node's URL and ``queue_type="quorum"``: the queues are then replicated
(a classic queue lives on one node and is gone while that node is), and the bus reconnects to
the next node that answers when its node goes away (:mod:`.rabbitmq_connection`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
)
from aio_pika.exceptions import (
    AMQPConnectionError,
    AMQPError,
    ChannelClosed,
    ChannelInvalidStateError,
    ChannelNotFoundEntity,
    DeliveryError,
)

from ..errors import BusConnectionError
from ..events import DomainEvent, EventRegistry
from ..redact import redact_url
from . import _amqp_compat, rabbitmq_connection, wire
from .broker import BrokerEventBus, DeadLetter
from .handlers import HandlerFailure, Subscriber, subscription_key
from .rabbitmq_config import RabbitMQEventBusConfig

__all__ = ["RabbitMQEventBus", "RabbitMQEventBusConfig"]

logger = logging.getLogger("eventsource_lab.bus.rabbitmq")
_amqp_compat.install()  # a message whose properties pamqp cannot read must not drop the connection

_LOST = (ConnectionError, OSError, ChannelInvalidStateError, asyncio.TimeoutError)
_EVERYTHING = "#"
_RECONNECT_INTERVAL = 1.0  # seconds between reconnection attempts after the broker went away
# Headers the bus writes (only these travel on; RabbitMQ's own x-death is dropped).
_RETRIES, _FAILED = "x-retry-count", "x-failed-handlers"
_ERROR_TYPE, _ERROR, _ORIGINAL_ID = "x-error-type", "x-error", "x-original-message-id"
_UNREADABLE = "x-unreadable-properties"  # what a copy could not carry, so it stays malformed


class RabbitMQEventBus(BrokerEventBus):
    """Publishes with publisher confirms; consumes its group's queue in order, acknowledging a
    message once every handler succeeded or it was handed on to the retry queue or the DLQ."""

    config: RabbitMQEventBusConfig

    TRANSIENT = (
        *BrokerEventBus.TRANSIENT,
        AMQPConnectionError,
        ChannelClosed,
        ChannelInvalidStateError,
    )

    def __init__(
        self,
        config: RabbitMQEventBusConfig | None = None,
        event_registry: EventRegistry | None = None,
        **options: Any,
    ) -> None:
        super().__init__(config or RabbitMQEventBusConfig(), event_registry, **options)
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None  # publishing, with confirms
        self._exchange: AbstractExchange | None = None
        self._bindings: list[str] = []
        self._bound: tuple[AbstractQueue, AbstractExchange] | None = None
        self._dlq_lock = asyncio.Lock()
        self._dlq_taken = 0  # dead letters acknowledged by the browse under way

    # -- connection --------------------------------------------------------------------------

    async def _connect(self) -> None:
        cfg = self.config
        connection = await rabbitmq_connection.connect(
            cfg.urls,
            heartbeat=cfg.heartbeat,
            reconnect_interval=_RECONNECT_INTERVAL,
            # each URL its share of publish_timeout (1 s at least): a hung node leaves time
            timeout=max(1.0, min(10.0, cfg.publish_timeout / len(cfg.urls))),
            client_properties={"connection_name": cfg.consumer_name},
        )
        try:
            self._channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            self._exchange = await self._channel.declare_exchange(
                cfg.exchange_name, cfg.exchange_type, durable=cfg.durable
            )
        except BaseException:
            await connection.close()
            raise
        connection.reconnect_callbacks.add(self._reconnected)
        self._connection = connection

    async def _disconnect(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = self._channel = self._exchange = None

    def _reconnected(self, *_: object) -> None:
        self._stats["reconnections"] += 1
        logger.info("reconnected to RabbitMQ at %s", self.connected_url)

    @property
    def connected_url(self) -> str | None:
        """The URL (without password) of the node this bus is connected to, if it is."""
        connection = self._connection
        if not isinstance(connection, rabbitmq_connection.FailoverConnection):
            return None
        return redact_url(connection.current_url) if connection.connected.is_set() else None

    # -- publishing --------------------------------------------------------------------------

    async def _send(self, events: list[DomainEvent]) -> None:
        assert self._channel is not None and self._exchange is not None, "not connected"
        exchange = self._exchange
        try:
            await self._channel.ready()  # while reconnecting; publish_timeout bounds the wait
            results = await asyncio.gather(
                *(
                    exchange.publish(self._message(e), _routing_key(e), mandatory=False)
                    for e in events
                ),
                return_exceptions=True,
            )
        except _LOST as exc:
            raise BusConnectionError(f"publishing to RabbitMQ failed: {exc!r}") from exc
        # A nack (DeliveryError) is the broker not taking the message, as a quorum queue between
        # leaders does while a node stops: like a lost connection, publishing again may succeed.
        errors = [r for r in results if isinstance(r, BaseException)]
        if any(isinstance(error, DeliveryError) for error in errors):
            await rabbitmq_connection.renew_channel(self._channel)
        if errors:
            raise BusConnectionError(
                f"RabbitMQ did not confirm {len(errors)} of {len(events)} events: {errors[0]!r}"
            ) from errors[0]

    def _message(self, event: DomainEvent) -> aio_pika.Message:
        direct = self.config.exchange_type == "direct"
        return aio_pika.Message(
            wire.encode(event),
            content_type=wire.CONTENT_TYPE,
            type=event.event_type,
            message_id=str(event.event_id),
            delivery_mode=_delivery_mode(self.config.durable),
            headers={"BCC": [_EVERYTHING]} if direct else None,
        )

    async def _republish(
        self,
        queue: str,
        message: AbstractIncomingMessage,
        headers: dict[str, Any],
        *,
        message_id: str | None = None,
        delay: float | None = None,
    ) -> None:
        """Send a copy of ``message`` straight to ``queue``; returns once the broker has it
        (and raises if ``queue`` is gone rather than let the broker drop the copy)."""
        assert self._channel is not None, "not connected"
        if unreadable := _unreadable(message):  # its properties that cannot be sent are dropped
            headers = {**headers, _UNREADABLE: unreadable}
        copy = aio_pika.Message(
            message.body,
            content_type=_amqp_compat.text(message.content_type),
            type=_amqp_compat.text(message.type),
            message_id=message_id or _amqp_compat.text(message.message_id),
            delivery_mode=_delivery_mode(self.config.durable),
            headers=headers,
            expiration=delay,
        )
        await self._channel.default_exchange.publish(copy, queue, mandatory=True)

    # -- consuming ---------------------------------------------------------------------------

    async def bind_event_type(self, event_class: type[DomainEvent]) -> None:
        """Have this group's queue receive ``event_class`` only (plus other bound types).

        The first call replaces the queue's default binding to everything; later calls add
        types. Bindings live at the broker and are shared by the group, so give every consumer
        of a group the same ones: a consumer that binds nothing restores "everything" when it
        starts. On a topic exchange the key is ``#.{event_type}`` (any aggregate); on a direct
        one ``{aggregate_type}.{event_type}`` with the class's default ``aggregate_type``.
        """
        if self.config.exchange_type == "fanout":
            raise ValueError(
                "a fanout exchange gives every queue every event; use exchange_type='topic' "
                "or 'direct' to bind single event types"
            )
        event_type = subscription_key(event_class)
        if self.config.exchange_type == "topic":
            key = f"#.{event_type}"
        else:
            key = f"{event_class.model_fields['aggregate_type'].default}.{event_type}"
        if key not in self._bindings:
            self._bindings.append(key)
            if self._bound is not None:
                await self._bind(*self._bound)

    async def _bind(self, queue: AbstractQueue, exchange: AbstractExchange) -> None:
        for key in self._bindings or [_EVERYTHING]:
            await queue.bind(exchange, key)
        if self._bindings:
            await queue.unbind(exchange, _EVERYTHING)

    async def _declare(self, channel: AbstractChannel) -> AbstractQueue:
        """Declare the exchange and this group's queues on ``channel`` and bind its queue."""
        cfg = self.config
        exchange = await channel.declare_exchange(
            cfg.exchange_name, cfg.exchange_type, durable=cfg.durable
        )
        queue = await channel.declare_queue(
            cfg.queue, durable=cfg.durable, arguments=cfg.queue_arguments()
        )
        retry = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": cfg.queue}
        if cfg.queue_type == "quorum":  # else a retry is lost if a node stops as it expires
            retry.update(
                {"x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"}
            )
        await channel.declare_queue(
            cfg.retry_queue, durable=cfg.durable, arguments=cfg.queue_arguments(**retry)
        )
        await channel.declare_queue(
            cfg.dlq_queue, durable=cfg.durable, arguments=cfg.queue_arguments()
        )
        await self._bind(queue, exchange)
        self._bound = (queue, exchange)
        return queue

    async def _consume(self) -> None:
        assert self._connection is not None
        wait = self.config.publish_timeout
        try:  # a robust connection may still be reconnecting (after a broker restart, say)
            await asyncio.wait_for(self._connection.connected.wait(), wait)
        except asyncio.TimeoutError as exc:
            raise BusConnectionError(f"RabbitMQ did not come back within {wait:g}s") from exc
        channel = await self._connection.channel(publisher_confirms=False)
        inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        try:
            await channel.set_qos(prefetch_count=self.config.prefetch_count)
            queue = await self._declare(channel)
            await queue.consume(inbox.put, consumer_tag=self.config.consumer_name)
            self._consuming_ready()
            while not self._stopping:
                message = await inbox.get()
                self._busy = True
                try:
                    await self._process(message)
                except (AMQPError, *_LOST) as exc:
                    logger.warning("could not finish %s (%r); requeued", _name(message), exc)
                    with contextlib.suppress(AMQPError, *_LOST):
                        await message.nack(requeue=True)
                finally:
                    self._busy = False
        finally:
            self._bound = None
            with contextlib.suppress(AMQPError, *_LOST):
                await channel.close()  # the broker requeues what this consumer had not acked

    async def _process(self, message: AbstractIncomingMessage) -> None:
        """Handle one delivery, then acknowledge it; a stale one (its channel is gone) is left
        to the broker, which redelivers it."""
        if _stale(message):
            return
        self._stats["events_consumed"] += 1
        if message.redelivered:
            self._stats["messages_recovered"] += 1
        headers = message.headers or {}
        retries = _count(headers.get(_RETRIES))
        try:
            if unreadable := _unreadable(message):
                raise wire.MalformedMessageError(f"AMQP properties unreadable: {unreadable}")
            event = self._decode(message.body, message.type)
        except wire.DecodeError as exc:
            await self._give_up(message, exc, retries, [])
        else:
            failures = await self._dispatch(event, self._retried(event, headers, retries))
            if not failures:
                self._stats["events_processed"] += 1
            elif retries < self.config.max_retries:
                await self._retry(message, retries, self._failed_keys(event, failures))
            else:
                failed = self._failed_keys(event, failures)
                await self._give_up(message, failures[0].error, retries, failed)
        await _ack(message)

    def _retried(
        self, event: DomainEvent, headers: dict[str, Any], retries: int
    ) -> list[Subscriber] | None:
        """On a retry, only the subscribers that failed before (by key); else all (``None``)."""
        failed = headers.get(_FAILED)
        if not retries or not isinstance(failed, list):
            return None
        keys = {str(key) for key in failed}
        return [s for key, s in _keyed(self._subscriptions.route(event.event_type)) if key in keys]

    async def _retry(
        self, message: AbstractIncomingMessage, retries: int, failed: list[str]
    ) -> None:
        """Park ``message`` in the retry queue until its backoff expires (TTLs expire at the
        queue's head only, so a short wait can last as long as a longer one ahead of it)."""
        delay = self._handler_retry.delay(min(retries, 32))
        headers = {_RETRIES: retries + 1, _FAILED: failed}
        await self._republish(self.config.retry_queue, message, headers, delay=delay)
        logger.info("message %s failed; retry %d in %.2fs", _name(message), retries + 1, delay)

    def _failed_keys(self, event: DomainEvent, failures: list[HandlerFailure]) -> list[str]:
        """The keys of the failing subscribers, for the consumer that takes the retry."""
        failing = [f.subscriber for f in failures]
        route = self._subscriptions.route(event.event_type)
        return [key for key, s in _keyed(route) if any(s is f for f in failing)]

    async def _give_up(
        self,
        message: AbstractIncomingMessage,
        error: BaseException,
        retries: int,
        failed: list[str],
    ) -> None:
        """Dead-letter ``message`` with why; without a DLQ, keep retrying it (never drop it)."""
        self._stats["events_failed"] += 1
        if not self.config.enable_dlq:
            logger.error("message %s failed (%r); DLQ off, retrying", _name(message), error)
            await self._retry(message, retries, failed)
            return
        headers = {
            _ERROR_TYPE: type(error).__name__,
            _ERROR: _describe(error)[:2000],
            _RETRIES: retries,
            _ORIGINAL_ID: _amqp_compat.escaped(message.message_id or ""),
        }
        await self._republish(self.config.dlq_queue, message, headers, message_id=uuid.uuid4().hex)
        self._stats["messages_dead_lettered"] += 1
        logger.error("message %s moved to %s: %r", _name(message), self.config.dlq_queue, error)

    # -- dead letters ------------------------------------------------------------------------

    async def get_dlq_messages(self, limit: int = 100) -> list[DeadLetter]:
        """Read without removing: the messages are fetched unacknowledged and put back, in
        order, when the browsing channel closes."""
        letters = []
        async with self._browse_dlq() as dlq:
            while len(letters) < limit and (message := await dlq.get(no_ack=False, fail=False)):
                letters.append(_dead_letter(message))
        return letters

    async def replay_dlq_message(self, message_id: str) -> bool:
        async with self._browse_dlq() as dlq:
            while (message := await dlq.get(no_ack=False, fail=False)) is not None:
                if message.message_id == message_id:
                    original = str((message.headers or {}).get(_ORIGINAL_ID, "")) or None
                    await self._republish(self.config.queue, message, {}, message_id=original)
                    await message.ack()
                    self._dlq_taken += 1
                    return True
        return False

    async def get_backlog(self) -> dict[str, int | None]:
        """``pending``: messages ready in this group's queue plus those waiting out a retry
        backoff in its retry queue (messages a consumer holds unacknowledged are not counted:
        AMQP does not report them). ``dlq``: messages in the group's DLQ."""
        cfg = self.config
        await self.connect()
        async with self._dlq_lock:  # not while this bus browses the DLQ (it holds messages)
            ready, waiting, dlq = [
                await self._depth(queue) for queue in (cfg.queue, cfg.retry_queue, cfg.dlq_queue)
            ]
        return {"pending": ready + waiting, "dlq": dlq}

    async def _depth(self, queue: str) -> int:
        """Messages ready in ``queue`` by a passive declare (0 if it does not exist yet)."""
        assert self._connection is not None
        channel = await self._connection.channel(publisher_confirms=False)
        try:
            declared = await channel.declare_queue(queue, passive=True, robust=False)
        except ChannelNotFoundEntity:
            return 0
        finally:
            with contextlib.suppress(AMQPError, *_LOST):
                await channel.close()
        return declared.declaration_result.message_count or 0

    @contextlib.asynccontextmanager
    async def _browse_dlq(self) -> AsyncIterator[AbstractQueue]:
        """This group's DLQ on a channel of its own; what was fetched and not acknowledged
        goes back to the queue when it closes. One browse at a time per bus.

        A quorum queue puts a returned message at its back, so there the rest of the queue is
        fetched too before all go back: the whole queue cycles and keeps its order. It takes
        them back after the channel closed, so the browse waits until they are there again."""
        await self.connect()
        assert self._connection is not None
        quorum = self.config.queue_type == "quorum"
        async with self._dlq_lock:
            channel = await self._connection.channel(publisher_confirms=False)
            self._dlq_taken = 0
            try:
                dlq = await channel.declare_queue(
                    self.config.dlq_queue,
                    durable=self.config.durable,
                    arguments=self.config.queue_arguments(),
                    robust=False,
                )
                yield dlq
                while quorum and await dlq.get(no_ack=False, fail=False) is not None:
                    pass
            finally:
                await channel.close()
            held = (dlq.declaration_result.message_count or 0) - self._dlq_taken
            for _ in range(500 if quorum else 0):  # 5 s at most
                if await self._depth(self.config.dlq_queue) >= held:
                    break
                await asyncio.sleep(0.01)


def _routing_key(event: DomainEvent) -> str:
    return f"{event.aggregate_type}.{event.event_type}"


def _delivery_mode(durable: bool) -> aio_pika.DeliveryMode:
    return aio_pika.DeliveryMode.PERSISTENT if durable else aio_pika.DeliveryMode.NOT_PERSISTENT


async def _ack(message: AbstractIncomingMessage) -> None:
    """Acknowledge ``message`` without waiting until the frame is in the socket, as aio-pika's
    ``ack()`` does: that wait cost two loop passes a message (a fifth of consuming here) and
    promised nothing more, since no ack is ever confirmed by the broker. The channel's frames go
    out in order, so an ack queued before a close is sent before it; one lost with the
    connection means a redelivery, as an unsent one always did."""
    await message.channel.basic_ack(delivery_tag=message.delivery_tag, wait=False)


def _stale(message: AbstractIncomingMessage) -> bool:
    """Whether ``message`` came on a channel that has closed since (it cannot be acked)."""
    try:
        return message.channel.is_closed
    except ChannelInvalidStateError:
        return True


def _count(value: object) -> int:
    """A retry count from a header; anything else (a message from elsewhere) counts as 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _keyed(route: tuple[Subscriber, ...]) -> list[tuple[str, Subscriber]]:
    """Each subscriber of a route with its key: its name and its position among same-named
    subscribers (two instances of a class, or two lambdas, get different keys)."""
    seen: dict[str, int] = {}
    keyed = []
    for subscriber in route:
        position = seen[subscriber.name] = seen.get(subscriber.name, -1) + 1
        keyed.append((f"{subscriber.name}#{position}", subscriber))
    return keyed


def _describe(error: BaseException) -> str:
    """``str(error)``, or its class name when its ``__str__`` fails: a handler's exception must
    not end the consumer loop on its way to the DLQ."""
    try:
        return str(error)
    except Exception:
        return f"<{type(error).__name__}: unprintable>"


def _name(message: AbstractIncomingMessage) -> str:
    """The message id to log (escaped: a broken producer's id may be no UTF-8)."""
    return _amqp_compat.escaped(message.message_id or "?")


def _unreadable(message: AbstractIncomingMessage) -> str:
    """The properties of ``message`` no client can send again, as text (empty if none),
    with those an earlier copy had to drop."""
    found = _amqp_compat.unreadable_properties(message)
    dropped = (message.headers or {}).get(_UNREADABLE)
    if isinstance(dropped, str) and dropped:
        found.append(dropped)
    return "; ".join(found)


def _dead_letter(message: AbstractIncomingMessage) -> DeadLetter:
    headers = message.headers or {}
    return DeadLetter(
        id=message.message_id or "",
        original_id=str(headers.get(_ORIGINAL_ID, "")),
        event_type=message.type or None,
        error_type=str(headers.get(_ERROR_TYPE, "")),
        error=str(headers.get(_ERROR, "")),
        retries=_count(headers.get(_RETRIES)),
        body=message.body,
    )
