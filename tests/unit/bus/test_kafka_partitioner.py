"""The bus's keys and partitioner must agree with aiokafka's (and so Kafka's) for every key, or
one aggregate's events would land on two partitions and lose their order."""

from __future__ import annotations

import os
import uuid
from uuid import UUID, uuid4

import pytest
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


# Adversarial cases for the murmurhash2-backed partitioner and the bytes-built key text.


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00",
        b"x" * 10_240,
        bytes(range(256)) * 40 + b"abc",  # 10 KB and a ragged tail
        os.urandom(10_243),
        "Zoë ✓ \U0001f600 Ωμέγα".encode(),
        "Zoë".encode("utf-16"),
        b"\xff" * 7,
    ],
    ids=["empty", "nul", "10k-ascii", "10k-ragged", "10k-random", "utf8", "utf16", "high-bytes"],
)
def test_murmur2_and_partition_are_aiokafkas_for_awkward_keys(data: bytes) -> None:
    assert murmur2(data) == aiokafka_murmur2(data)
    for count in (1, 2, 3, 7, 64, 1000):
        partitions = list(range(count))
        assert partition_for(data, partitions) == DefaultPartitioner()(data, partitions, partitions)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=100, max_size=20_000))
def test_murmur2_is_aiokafkas_for_long_keys(data: bytes) -> None:
    assert murmur2(data) == aiokafka_murmur2(data)


@pytest.mark.parametrize(
    "partitions",
    [range(6), tuple(range(6)), list(range(6)), range(3, 9), (5,), [0], range(1)],
    ids=["range", "tuple", "list", "offset-range", "one-tuple", "one-list", "one-range"],
)
def test_partition_for_takes_any_sequence_of_partitions(partitions) -> None:
    ids = list(partitions)
    for _ in range(200):
        key = str(uuid4()).encode()
        got = partition_for(key, partitions)
        assert got in ids
        assert got == DefaultPartitioner()(key, ids, ids)


def test_a_single_partition_takes_every_key() -> None:
    assert {partition_for(os.urandom(n), [4]) for n in range(50)} == {4}


@pytest.mark.parametrize("key", ["abc", "5d3c1e9a-7f00-4d1e-9c2b-2f0e5b6a7c81", None, 123, ["a"]])
def test_a_key_that_is_no_bytes_is_a_type_error_not_a_partition(key) -> None:
    with pytest.raises(TypeError, match=type(key).__name__):
        partition_for(key, [0, 1, 2])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=type(key).__name__):
        murmur2(key)  # type: ignore[arg-type]


@pytest.mark.parametrize("wrap", [bytearray, memoryview, lambda b: memoryview(b"..." + b)[3:]])
def test_a_bytes_like_key_hashes_as_aiokafka_does_or_is_refused(wrap) -> None:
    # Never a silent wrong partition: either aiokafka's answer or a TypeError. (The bus only
    # passes bytes; the old Python murmur2 accepted any buffer, murmurhash2 takes bytes only.)
    for data in (b"", b"abc", str(uuid4()).encode(), os.urandom(1000)):
        try:
            got = murmur2(wrap(data))
        except TypeError:
            continue
        assert got == aiokafka_murmur2(data)


def test_a_bytes_subclass_key_hashes_as_its_bytes() -> None:
    class Key(bytes):
        pass

    for data in (b"", b"21", str(uuid4()).encode()):
        assert murmur2(Key(data)) == aiokafka_murmur2(data)
        assert partition_for(Key(data), range(5)) == partition_for(data, range(5))


class _PlainUUID(UUID):
    pass


class _OddText(UUID):
    def __str__(self) -> str:  # pragma: no cover - must not be what the key is built from
        return "not-the-canonical-form"


@pytest.mark.parametrize(
    "value",
    [
        UUID(int=0),
        UUID(int=(1 << 128) - 1),
        UUID("00000000-0000-0000-0000-000000000001"),
        UUID("80000000-0000-0000-0000-000000000000"),
        uuid.uuid1(),
        uuid.uuid1(node=0, clock_seq=0),
        uuid.uuid3(uuid.NAMESPACE_DNS, "example.org"),
        uuid.uuid5(uuid.NAMESPACE_URL, "https://example.org/Zoë"),
        uuid4(),
        _PlainUUID(int=123456789),
        _PlainUUID(str(uuid4())),
    ],
    ids=lambda v: type(v).__name__,  # the same on every xdist worker, unlike random values
)
def test_uuid_text_is_str_for_every_kind_of_uuid(value: UUID) -> None:
    assert _uuid_text(value) == str(value).encode()
    assert UUID(_uuid_text(value).decode()) == value


def test_uuid_text_of_a_subclass_with_its_own_str_is_the_canonical_form() -> None:
    # read(aggregate_id=) keys by str(UUID(...)), the canonical form: publish must match it.
    value = _OddText(int=0xDEADBEEF)
    assert _uuid_text(value) == str(UUID(int=value.int)).encode()
    assert partition_for(_uuid_text(value), range(8)) == partition_for(
        str(UUID(int=value.int)).encode(), range(8)
    )


@pytest.mark.parametrize("value", ["12345678-1234-5678-1234-567812345678", None, 5])
def test_uuid_text_of_something_not_a_uuid_fails_loudly(value) -> None:
    with pytest.raises(AttributeError):
        _uuid_text(value)  # type: ignore[arg-type]
