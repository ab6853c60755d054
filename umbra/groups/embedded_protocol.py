"""The Kafka consumer's embedded protocol: ConsumerProtocolSubscription (JoinGroup metadata) and
ConsumerProtocolAssignment (SyncGroup assignment), versions 0-3, from Kafka's message definitions.

The coordinator reads them only for groups that move between the classic and the consumer protocol (KIP-848's
online migration): a classic member's topics and owned partitions, and the assignment the server computes for it.
Pure bytes in, values out; not the wire protocol of the broker (that stays in the handlers).

Layouts (non-flexible, big-endian; string = int16 length; array = int32 count; nullable bytes = int32 length):
  Subscription: version int16, topics [string], user_data bytes?, v1+ owned_partitions [topic string,
  partitions [int32]], v2+ generation_id int32, v3+ rack_id string?
  Assignment: version int16, assigned_partitions [topic string, partitions [int32]], user_data bytes?
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

# topic name -> partitions (the same shape as consumer_model.TopicPartitions)
Partitions = dict[str, frozenset[int]]
ASSIGNMENT_VERSION = 0  # every client reads version 0; versions 1-3 add nothing to the layout


class EmbeddedProtocolError(ValueError):
    """The bytes are not a ConsumerProtocolSubscription / ConsumerProtocolAssignment."""


@dataclass(frozen=True, slots=True)
class Subscription:
    version: int
    topics: tuple[str, ...]
    user_data: bytes | None = None
    owned_partitions: Partitions | None = None  # None before version 1
    generation_id: int = -1
    rack_id: str | None = None


class _Reader:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def _take(self, fmt: str) -> int:
        try:
            (value,) = struct.unpack_from(fmt, self._data, self._pos)
        except struct.error:
            raise EmbeddedProtocolError("truncated") from None
        self._pos += struct.calcsize(fmt)
        return int(value)

    def int16(self) -> int:
        return self._take(">h")

    def int32(self) -> int:
        return self._take(">i")

    @property
    def at_end(self) -> bool:
        return self._pos >= len(self._data)

    def _raw(self, length: int) -> bytes:
        if length < 0 or self._pos + length > len(self._data):
            raise EmbeddedProtocolError("a length runs past the end")
        raw = self._data[self._pos:self._pos + length]
        self._pos += length
        return raw

    def string(self) -> str:
        length = self.int16()
        if length < 0:
            raise EmbeddedProtocolError("a null string where one is required")
        try:
            return self._raw(length).decode("utf-8")
        except UnicodeDecodeError:
            raise EmbeddedProtocolError("a string is not UTF-8") from None

    def nullable_string(self) -> str | None:
        length = self.int16()
        if length < 0:
            return None
        try:
            return self._raw(length).decode("utf-8")
        except UnicodeDecodeError:
            raise EmbeddedProtocolError("a string is not UTF-8") from None

    def nullable_bytes(self) -> bytes | None:
        length = self.int32()
        return None if length < 0 else self._raw(length)

    def count(self) -> int:
        count = self.int32()
        # Each element takes at least two bytes: a count beyond that is malformed, not a reason to allocate.
        if count < 0 or count > len(self._data):
            raise EmbeddedProtocolError(f"bad array length {count}")
        return count

    def topic_partitions(self) -> Partitions:
        result: dict[str, frozenset[int]] = {}
        for _ in range(self.count()):
            topic = self.string()
            parts = frozenset(self.int32() for _ in range(self.count()))
            result[topic] = result.get(topic, frozenset()) | parts
        return result


def decode_subscription(data: bytes) -> Subscription:
    """Fields a version does not have keep their defaults; a newer version's extra bytes are ignored."""
    reader = _Reader(data)
    version = reader.int16()
    if version < 0:
        raise EmbeddedProtocolError(f"bad version {version}")
    topics = tuple(reader.string() for _ in range(reader.count()))
    user_data = reader.nullable_bytes()
    owned = generation = rack = None
    if version >= 1 and not reader.at_end:
        owned = reader.topic_partitions()
    if version >= 2 and not reader.at_end:
        generation = reader.int32()
    if version >= 3 and not reader.at_end:
        rack = reader.nullable_string()
    return Subscription(version, topics, user_data, owned, -1 if generation is None else generation, rack)


def decode_assignment(data: bytes) -> Partitions:
    """The assigned partitions; empty bytes (a member that got no assignment yet) assign nothing."""
    if not data:
        return {}
    reader = _Reader(data)
    if reader.int16() < 0:
        raise EmbeddedProtocolError("bad version")
    return reader.topic_partitions()


def _topic_partitions(partitions: Partitions) -> bytes:
    out = [struct.pack(">i", sum(1 for parts in partitions.values() if parts))]
    for topic, parts in sorted(partitions.items()):
        if not parts:
            continue
        name = topic.encode("utf-8")
        out.append(struct.pack(">h", len(name)) + name + struct.pack(">i", len(parts)))
        out.append(b"".join(struct.pack(">i", p) for p in sorted(parts)))
    return b"".join(out)


def encode_assignment(partitions: Partitions, user_data: bytes | None = None) -> bytes:
    tail = struct.pack(">i", -1) if user_data is None else struct.pack(">i", len(user_data)) + user_data
    return struct.pack(">h", ASSIGNMENT_VERSION) + _topic_partitions(partitions) + tail


def encode_subscription(topics: list[str], owned: Partitions | None = None, *, version: int = 1,
                        generation_id: int = -1, rack_id: str | None = None) -> bytes:
    """What a Kafka consumer sends in JoinGroup (used by tests, and to describe classic members)."""
    out = [struct.pack(">hi", version, len(topics))]
    for topic in topics:
        name = topic.encode("utf-8")
        out.append(struct.pack(">h", len(name)) + name)
    out.append(struct.pack(">i", -1))  # no user data
    if version >= 1:
        out.append(_topic_partitions(owned or {}))
    if version >= 2:
        out.append(struct.pack(">i", generation_id))
    if version >= 3:
        rack = None if rack_id is None else rack_id.encode("utf-8")
        out.append(struct.pack(">h", -1) if rack is None else struct.pack(">h", len(rack)) + rack)
    return b"".join(out)
