"""Reading a stretch of a Kafka topic without a group: checked positions, true ends, records.

Replay and ``read()`` take ``{partition: offset}`` from users, so each is checked against the
topic's partitions and the partition's log first. The end of a log comes from a fetch, not
only from the end offset: tansu reports the first offset of the last record batch plus one.
"""

from __future__ import annotations

import asyncio
import operator
from collections.abc import AsyncGenerator, Collection, Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from ..errors import BusError

__all__ = ["log_ends", "records", "spans"]

_POLL_MS = 500  # one poll's wait; a reader gives up only after ``timeout`` without progress


async def spans(
    reader: AIOKafkaConsumer,
    topic: str,
    known: Collection[int],
    positions: Mapping[int, int],
    timeout: float,
) -> dict[TopicPartition, range]:
    """The offsets from ``positions`` to each partition's end, once each is checked to be one
    of ``known`` partitions and an offset in its log (its end included); else ValueError
    (TypeError for a partition or offset that is not an integer: ``"0"`` from JSON, ``1.0``,
    ``True``; NumPy's are taken).
    """
    asked: dict[TopicPartition, int] = {}
    for partition, offset in positions.items():
        try:
            if isinstance(partition, bool) or isinstance(offset, bool):
                raise TypeError
            number = operator.index(partition)
            asked[TopicPartition(topic, number)] = operator.index(offset)
        except TypeError:
            raise TypeError(
                f"positions map partition to offset, both ints; got {partition!r}: {offset!r}"
            ) from None
        if number not in known:
            raise ValueError(f"{topic} has no partition {number}: it has {sorted(known)}")
    starts = await reader.beginning_offsets(list(asked))
    ends = await log_ends(reader, list(asked), timeout)
    for tp, offset in asked.items():
        if offset > ends[tp]:
            raise ValueError(
                f"offset {offset} is beyond the end of partition {tp.partition} of {topic}, "
                f"which ends at {ends[tp]}"
            )
        if offset < starts[tp]:
            raise ValueError(
                f"offset {offset} is before the start of partition {tp.partition} of "
                f"{topic}, which starts at {starts[tp]}"
            )
    return {tp: range(offset, ends[tp]) for tp, offset in asked.items()}


async def log_ends(
    reader: AIOKafkaConsumer, tps: list[TopicPartition], timeout: float
) -> dict[TopicPartition, int]:
    """Where each partition's log ends now. tansu gives as end offset the first offset of the
    last record batch plus one, short by the rest of that batch (``publish`` sends batches), so
    the reader fetches from there and the end is after the last record it gets; on Kafka that
    confirms the end offset. A partition that gives nothing in ``timeout`` keeps its end offset.
    """
    ends = await reader.end_offsets(tps)
    probe = {tp: end - 1 for tp, end in ends.items() if end > 0}
    reader.assign(list(probe))
    for tp, offset in probe.items():
        reader.seek(tp, offset)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while probe and loop.time() < deadline:
        for tp, got in (await reader.getmany(*probe, timeout_ms=_POLL_MS)).items():
            if got and probe.pop(tp, None) is not None:
                ends[tp] = max(ends[tp], got[-1].offset + 1)
    return ends


async def records(
    reader: AIOKafkaConsumer, spans: dict[TopicPartition, range], timeout: float
) -> AsyncGenerator[ConsumerRecord, None]:
    """The records at ``spans``' offsets, each partition in order; a BusError if the reader
    makes no progress for ``timeout`` seconds."""
    todo = {tp: span for tp, span in spans.items() if span}
    reader.assign(list(todo))
    for tp, span in todo.items():
        reader.seek(tp, span.start)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while todo:
        batches = await reader.getmany(*todo, timeout_ms=_POLL_MS)
        if any(batches.values()):
            deadline = loop.time() + timeout
        elif loop.time() > deadline:
            short = {tp.partition: span.stop for tp, span in todo.items()}
            topic = next(iter(todo)).topic
            raise BusError(f"reading {topic} stopped short of its ends {short}")
        for tp, got in batches.items():
            span = todo.get(tp)
            if span is None:
                continue
            for record in got:
                if record.offset >= span.stop:
                    break
                yield record
            if got and got[-1].offset + 1 >= span.stop:
                del todo[tp]
