"""Which partition a keyed Kafka message goes to: Kafka's own rule, three times faster.

Every Kafka client puts a keyed message on partition ``murmur2(key) & 0x7fffffff`` modulo the
partition count, so producers in any language agree where an aggregate's events go (and their
order holds). aiokafka computes murmur2 byte by byte in Python, about 6-9 µs a key here, the
largest single cost of publishing; reading the key a 32-bit word at a time gives the same hash
(checked against aiokafka's in the tests) in a third of the time.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

__all__ = ["murmur2", "partition_for"]

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """MurmurHash2 of ``data`` as Kafka's Java client computes it, as an unsigned 32-bit int."""
    length = len(data)
    h = _SEED ^ length
    words = length >> 2
    for k in struct.unpack_from(f"<{words}I", data):
        k = (k * _M) & _MASK
        k = ((k ^ (k >> 24)) * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    if length & 3:
        h ^= int.from_bytes(data[words << 2 :], "little")
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    return h ^ (h >> 15)


def partition_for(key: bytes, partitions: Sequence[int]) -> int:
    """The partition of ``partitions`` (sorted by id) that Kafka's clients choose for ``key``."""
    return partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)]
