"""The bus's keys and partitioner must agree with aiokafka's (and so Kafka's) for every key, or
one aggregate's events would land on two partitions and lose their order."""

from __future__ import annotations

from uuid import UUID, uuid4

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given, settings
from hypothesis import strategies as st

from eventsource_lab.bus.kafka import _uuid_text
from eventsource_lab.bus.kafka_partitioner import murmur2, partition_for


@settings(max_examples=2_000, deadline=None)
@given(st.binary(max_size=80))
def test_murmur2_is_aiokafkas_for_any_bytes(data: bytes) -> None:
    assert murmur2(data) == aiokafka_murmur2(data)


def test_murmur2_covers_every_tail_length() -> None:
    for length in range(0, 12):
        data = bytes(range(200, 200 + length))
        assert murmur2(data) == aiokafka_murmur2(data), length


@settings(max_examples=500, deadline=None)
@given(st.integers(min_value=1, max_value=64))
def test_an_aggregate_id_goes_where_aiokafkas_send_puts_it(count: int) -> None:
    partitions = list(range(count))
    for _ in range(20):
        key = str(uuid4()).encode()
        assert partition_for(key, partitions) == DefaultPartitioner()(key, partitions, partitions)


def test_known_values_of_kafkas_java_client() -> None:
    # Kafka's own test vectors (org.apache.kafka.common.utils.UtilsTest#testMurmur2)
    vectors = {
        b"21": -973932308,
        b"foobar": -790332482,
        b"a-little-bit-long-string": -985981536,
        b"a-little-bit-longer-string": -1486304829,
        b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
        b"abc": 479470107,
    }
    for data, signed in vectors.items():
        assert murmur2(data) == signed & 0xFFFFFFFF, data


@settings(max_examples=2_000, deadline=None)
@given(st.uuids())
def test_a_key_is_the_aggregate_ids_text_as_str_writes_it(value: UUID) -> None:
    # Another producer keying by str(aggregate_id) must reach the same partition.
    assert _uuid_text(value) == str(value).encode()
