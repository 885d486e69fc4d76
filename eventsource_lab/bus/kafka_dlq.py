"""Reading a Kafka dead-letter topic: to its end as of now, and from one letter's position.

The DLQ is one partition, a table keyed by the dead letter's id: a record with a value is a
letter, a later record with its key and no value (a tombstone) removes it. A reader cannot
stop at the broker's end offset (tansu reports it wrong), nor at the first poll that brings
nothing (a slow broker ends a listing early, a steady trickle of letters never ends it): it
writes a sentinel, a tombstone of a key no letter has, and reads up to the offset the broker
gave it. The sentinel removes nothing, listings skip it, and compaction drops it in time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from uuid import uuid4

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from ..errors import BusError

__all__ = ["find_letter", "live_letters", "read"]

_POLL_MS = 200  # one poll's wait; the reader gives up only after ``timeout`` without progress

_SENTINEL = "end-of-listing:"  # the sentinels' keys start so; no dead letter's id does


async def read(
    producer: AIOKafkaProducer,
    start_reader: Callable[[], Awaitable[AIOKafkaConsumer]],
    topic: str,
    offset: int = 0,
    timeout: float = 10.0,
) -> AsyncGenerator[ConsumerRecord, None]:
    """Every record of ``topic``'s partition 0 from ``offset`` to the end as of this call.

    Raises BusError if the reader makes no progress for ``timeout`` seconds.
    """
    key = f"{_SENTINEL}{uuid4().hex}".encode()
    try:
        end = (await producer.send_and_wait(topic, None, key=key, partition=0)).offset
    except KafkaError as exc:
        raise BusError(f"cannot mark the end of {topic}: {exc}") from exc
    reader = await start_reader()
    try:
        tp = TopicPartition(topic, 0)
        reader.assign([tp])
        reader.seek(tp, offset)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                records = (await reader.getmany(tp, timeout_ms=_POLL_MS)).get(tp, [])
            except KafkaError as exc:
                raise BusError(f"reading {topic} failed: {exc}") from exc
            if records:
                deadline = loop.time() + timeout
            elif loop.time() > deadline:
                raise BusError(f"reading {topic} stopped short of its end (offset {end})")
            for record in records:
                if record.offset >= end:
                    return
                yield record
    finally:
        await reader.stop()


def key_of(record: ConsumerRecord) -> str:
    return (record.key or b"").decode(errors="replace")


async def live_letters(records: AsyncGenerator[ConsumerRecord, None]) -> dict[str, ConsumerRecord]:
    """The letters no later tombstone removed, oldest first.

    A tombstone can come after any letter, so the whole topic is read; only the live letters
    are kept, which is what the DLQ holds (the limit is applied by the caller).
    """
    letters: dict[str, ConsumerRecord] = {}
    async with aclosing(records):
        async for record in records:
            key = key_of(record)
            letters.pop(key, None)
            if record.value is not None:
                letters[key] = record
    return letters


async def find_letter(
    records: AsyncGenerator[ConsumerRecord, None], letter_id: str
) -> tuple[ConsumerRecord | None, bool]:
    """The live letter ``letter_id`` among ``records``, and whether its key came up at all."""
    found, seen = None, False
    async with aclosing(records):
        async for record in records:
            if key_of(record) == letter_id:
                seen = True
                found = record if record.value is not None else None
    return found, seen
