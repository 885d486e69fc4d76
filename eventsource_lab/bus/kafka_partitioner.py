"""Which partition a keyed Kafka message goes to: Kafka's own rule, computed in C.

Every Kafka client puts a keyed message on partition ``murmur2(key) & 0x7fffffff`` modulo the
partition count, so producers in any language agree where an aggregate's events go (and their
order holds). aiokafka computes murmur2 byte by byte in Python, 8-10 µs a key here, the largest
single cost of publishing; the ``murmurhash2`` package computes the same hash (checked against
aiokafka's and Kafka's own test vectors in the tests) in about 0.3 µs.
"""

from __future__ import annotations

from collections.abc import Sequence

from murmurhash2 import murmurhash2

__all__ = ["murmur2", "partition_for"]

_SEED = 0x9747B28C
"""The seed Kafka's Java client hashes keys with."""


def murmur2(data: bytes) -> int:
    """MurmurHash2 of ``data`` as Kafka's Java client computes it, as an unsigned 32-bit int."""
    return murmurhash2(data, _SEED)


def partition_for(key: bytes, partitions: Sequence[int]) -> int:
    """The partition of ``partitions`` (sorted by id) that Kafka's clients choose for ``key``."""
    return partitions[(murmurhash2(key, _SEED) & 0x7FFFFFFF) % len(partitions)]
