"""Hand-written Produce request decoder (v3-v11): record sets come out as views of the request frame.

The schema codec copies every record set into a new ``bytes``; here each record set is a memoryview
slice of the received frame, which the log stamps in place (offsets, leader epoch) and writes as is.
The decoded object has the attribute names of the schema codec's ``ProduceRequest``, and a unit test
compares the two on every version.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from umbra.protocol.varint import VarintError, read_uvarint

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_ACKS_TIMEOUT = struct.Struct(">hi")


class ProduceDecodeError(ValueError):
    pass


@dataclass(slots=True)
class PartitionProduceData:
    index: int
    records: memoryview | None


@dataclass(slots=True)
class TopicProduceData:
    name: str
    partition_data: list[PartitionProduceData]


@dataclass(slots=True)
class ProduceRequestData:
    transactional_id: str | None
    acks: int
    timeout_ms: int
    topic_data: list[TopicProduceData]


class _Reader:
    __slots__ = ("view", "pos", "flexible")

    def __init__(self, view: memoryview, pos: int, flexible: bool) -> None:
        self.view, self.pos, self.flexible = view, pos, flexible

    def _need(self, n: int) -> None:
        if n < 0 or self.pos + n > len(self.view):
            raise ProduceDecodeError(f"Produce request truncated at byte {self.pos} (needs {n} more)")

    def uvarint(self) -> int:
        try:
            value, self.pos = read_uvarint(self.view, self.pos)
        except VarintError as exc:
            raise ProduceDecodeError(str(exc)) from None
        return value

    def int32(self) -> int:
        self._need(4)
        (value,) = _I32.unpack_from(self.view, self.pos)
        self.pos += 4
        return int(value)

    def array_length(self) -> int:
        return self.uvarint() - 1 if self.flexible else self.int32()

    def string(self, nullable: bool) -> str | None:
        if self.flexible:
            n = self.uvarint() - 1
        else:
            self._need(2)
            (n,) = _I16.unpack_from(self.view, self.pos)
            self.pos += 2
        if n < 0:
            if nullable:
                return None
            raise ProduceDecodeError("null string where a string is required")
        self._need(n)
        try:
            value = bytes(self.view[self.pos : self.pos + n]).decode("utf-8")
        except UnicodeDecodeError:
            raise ProduceDecodeError("string is not UTF-8") from None
        self.pos += n
        return value

    def records(self) -> memoryview | None:
        n = self.uvarint() - 1 if self.flexible else self.int32()
        if n < 0:
            return None
        self._need(n)
        value = self.view[self.pos : self.pos + n]
        self.pos += n
        return value

    def skip_tags(self) -> None:
        if not self.flexible:
            return
        for _ in range(self.uvarint()):
            self.uvarint()
            size = self.uvarint()
            self._need(size)
            self.pos += size


def decode_produce_request(frame: bytes | bytearray | memoryview, pos: int, version: int) -> ProduceRequestData:
    """Decode a Produce request body starting at ``pos``. Raises ProduceDecodeError on malformed input."""
    if not 3 <= version <= 12:
        raise ProduceDecodeError(f"Produce v{version} is not decoded here")
    reader = _Reader(memoryview(frame), pos, version >= 9)
    transactional_id = reader.string(nullable=True)
    reader._need(6)
    acks, timeout_ms = _ACKS_TIMEOUT.unpack_from(reader.view, reader.pos)
    reader.pos += 6
    topics = []
    topic_count = reader.array_length()
    if topic_count < 0:
        raise ProduceDecodeError("null topic array")
    for _ in range(topic_count):
        name = reader.string(nullable=False)
        assert name is not None
        partitions = []
        partition_count = reader.array_length()
        if partition_count < 0:
            raise ProduceDecodeError("null partition array")
        for _ in range(partition_count):
            index = reader.int32()
            records = reader.records()
            reader.skip_tags()
            partitions.append(PartitionProduceData(index, records))
        reader.skip_tags()
        topics.append(TopicProduceData(name, partitions))
    reader.skip_tags()
    if reader.pos != len(reader.view):
        raise ProduceDecodeError(f"{len(reader.view) - reader.pos} unexpected bytes after the Produce request")
    return ProduceRequestData(transactional_id, int(acks), int(timeout_ms), topics)
