"""Kafka's record schemas for ``__consumer_offsets``, sans-I/O: bytes in, dataclasses out.

Written from Kafka's message definitions (group-coordinator ``OffsetCommitKey``/``OffsetCommitValue``,
``GroupMetadataKey``/``GroupMetadataValue``), so that tools reading the topic (Burrow, Kafka's own
``kafka-console-consumer --formatter``) understand umbra's records. Every key and value starts with an int16
version; for keys it is the record type:

    0, 1   OffsetCommitKey      group:string topic:string partition:int32
    2      GroupMetadataKey     group:string
    3+     KIP-848/share/streams group records: not written by umbra's classic coordinator, skipped on replay

Values are written in the versions Kafka 3.x/4.0 writes by default (OffsetCommitValue v3, or v1 when the
commit carries an expire timestamp; GroupMetadataValue v3); every valid version (0-4, v4 flexible) is read.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

OFFSET_COMMIT_KEY_VERSION = 1  # 0 is the same layout; Kafka writes 1
GROUP_METADATA_KEY_VERSION = 2
OFFSET_COMMIT_VALUE_VERSION = 3
OFFSET_COMMIT_VALUE_VERSION_WITH_EXPIRY = 1  # the only version with an expireTimestamp field
GROUP_METADATA_VALUE_VERSION = 3
MAX_VALUE_VERSION = 4
_FLEXIBLE_FROM = 4
NO_TIMESTAMP = -1


class SchemaError(ValueError):
    """Bytes that do not match the schema of their version (or a version this module does not know)."""


# --- records -----------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class OffsetCommitKey:
    group_id: str
    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class GroupMetadataKey:
    group_id: str


@dataclass(frozen=True, slots=True)
class UnknownKey:
    """A record type umbra does not use (KIP-848 consumer groups, share groups, ...)."""
    version: int


@dataclass(frozen=True, slots=True)
class OffsetCommitValue:
    offset: int
    leader_epoch: int
    metadata: str
    commit_timestamp: int
    expire_timestamp: int = NO_TIMESTAMP


@dataclass(frozen=True, slots=True)
class MemberMetadata:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout: int
    session_timeout: int
    subscription: bytes
    assignment: bytes


@dataclass(frozen=True, slots=True)
class GroupMetadataValue:
    protocol_type: str
    generation: int
    protocol: str | None
    leader: str | None
    current_state_timestamp: int
    members: tuple[MemberMetadata, ...]


# --- writing -----------------------------------------------------------------------------------------

def _string(text: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) > 0x7FFF:
        raise SchemaError("string longer than 32767 bytes")
    return struct.pack(">h", len(raw)) + raw


def _nullable_string(text: str | None) -> bytes:
    return struct.pack(">h", -1) if text is None else _string(text)


def _bytes(raw: bytes) -> bytes:
    return struct.pack(">i", len(raw)) + raw


def encode_offset_commit_key(key: OffsetCommitKey) -> bytes:
    return (struct.pack(">h", OFFSET_COMMIT_KEY_VERSION) + _string(key.group_id) + _string(key.topic)
            + struct.pack(">i", key.partition))


def encode_group_metadata_key(key: GroupMetadataKey) -> bytes:
    return struct.pack(">h", GROUP_METADATA_KEY_VERSION) + _string(key.group_id)


def encode_offset_commit_value(value: OffsetCommitValue) -> bytes:
    """v3, or v1 when the commit has an expire timestamp (v1 has no leader epoch): Kafka's choice."""
    if value.expire_timestamp != NO_TIMESTAMP:
        return (struct.pack(">hq", OFFSET_COMMIT_VALUE_VERSION_WITH_EXPIRY, value.offset) + _string(value.metadata)
                + struct.pack(">qq", value.commit_timestamp, value.expire_timestamp))
    return (struct.pack(">hqi", OFFSET_COMMIT_VALUE_VERSION, value.offset, value.leader_epoch)
            + _string(value.metadata) + struct.pack(">q", value.commit_timestamp))


def encode_group_metadata_value(value: GroupMetadataValue) -> bytes:
    parts = [struct.pack(">h", GROUP_METADATA_VALUE_VERSION), _string(value.protocol_type),
             struct.pack(">i", value.generation), _nullable_string(value.protocol), _nullable_string(value.leader),
             struct.pack(">qi", value.current_state_timestamp, len(value.members))]
    for m in value.members:
        parts += [_string(m.member_id), _nullable_string(m.group_instance_id), _string(m.client_id),
                  _string(m.client_host), struct.pack(">ii", m.rebalance_timeout, m.session_timeout),
                  _bytes(m.subscription), _bytes(m.assignment)]
    return b"".join(parts)


# --- reading -----------------------------------------------------------------------------------------

class _Reader:
    """Reads one version of a schema; ``flexible`` switches to compact lengths and tagged fields."""

    def __init__(self, buf: bytes, pos: int, *, flexible: bool = False) -> None:
        self.buf = buf
        self.pos = pos
        self.flexible = flexible

    def _take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.buf):
            raise SchemaError("truncated record")
        chunk = self.buf[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def _fixed(self, fmt: str) -> int:
        (value,) = struct.unpack(fmt, self._take(struct.calcsize(fmt)))
        return int(value)

    def int16(self) -> int:
        return self._fixed(">h")

    def int32(self) -> int:
        return self._fixed(">i")

    def int64(self) -> int:
        return self._fixed(">q")

    def uvarint(self) -> int:
        result = shift = 0
        while True:
            byte = self._take(1)[0]
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result
            shift += 7
            if shift > 28:
                raise SchemaError("varint too long")

    def _length(self, fixed: str) -> int:
        """A length prefix; -1 means null."""
        return self.uvarint() - 1 if self.flexible else self._fixed(fixed)

    def nullable_string(self) -> str | None:
        length = self._length(">h")
        if length < 0:
            return None
        try:
            return self._take(length).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SchemaError(f"string is not UTF-8: {exc}") from None

    def string(self) -> str:
        text = self.nullable_string()
        if text is None:
            raise SchemaError("null where the schema wants a string")
        return text

    def bytes_(self) -> bytes:
        length = self._length(">i")
        if length < 0:
            raise SchemaError("null where the schema wants bytes")
        return self._take(length)

    def array_length(self) -> int:
        length = self._length(">i")
        if length < 0 or length > len(self.buf) - self.pos:
            raise SchemaError(f"bad array length {length}")
        return length

    def tagged_fields(self) -> None:
        """Skip a flexible struct's tagged fields (none of these schemas has one umbra needs)."""
        if self.flexible:
            for _ in range(self.uvarint()):
                self.uvarint()
                self._take(self.uvarint())

    def end(self) -> None:
        if self.pos != len(self.buf):
            raise SchemaError(f"{len(self.buf) - self.pos} bytes after the record")


def key_version(key: bytes) -> int:
    if len(key) < 2:
        raise SchemaError("key shorter than its version")
    return int(struct.unpack_from(">h", key)[0])


def decode_key(key: bytes) -> OffsetCommitKey | GroupMetadataKey | UnknownKey:
    version = key_version(key)
    reader = _Reader(key, 2)
    if version in (0, 1):
        decoded: OffsetCommitKey | GroupMetadataKey = OffsetCommitKey(reader.string(), reader.string(),
                                                                      reader.int32())
    elif version == GROUP_METADATA_KEY_VERSION:
        decoded = GroupMetadataKey(reader.string())
    elif version > GROUP_METADATA_KEY_VERSION:
        return UnknownKey(version)
    else:
        raise SchemaError(f"negative key version {version}")
    reader.end()
    return decoded


def _value_reader(value: bytes) -> tuple[int, _Reader]:
    if len(value) < 2:
        raise SchemaError("value shorter than its version")
    version = int(struct.unpack_from(">h", value)[0])
    if not 0 <= version <= MAX_VALUE_VERSION:
        raise SchemaError(f"unknown value version {version}")
    return version, _Reader(value, 2, flexible=version >= _FLEXIBLE_FROM)


def decode_offset_commit_value(value: bytes) -> OffsetCommitValue:
    version, reader = _value_reader(value)
    offset = reader.int64()
    leader_epoch = reader.int32() if version >= 3 else -1
    metadata = reader.string()
    commit_timestamp = reader.int64()
    expire_timestamp = reader.int64() if version == 1 else NO_TIMESTAMP
    reader.tagged_fields()
    reader.end()
    return OffsetCommitValue(offset, leader_epoch, metadata, commit_timestamp, expire_timestamp)


def decode_group_metadata_value(value: bytes) -> GroupMetadataValue:
    version, reader = _value_reader(value)
    protocol_type = reader.string()
    generation = reader.int32()
    protocol = reader.nullable_string()
    leader = reader.nullable_string()
    timestamp = reader.int64() if version >= 2 else NO_TIMESTAMP
    members = []
    for _ in range(reader.array_length()):
        member_id = reader.string()
        instance_id = reader.nullable_string() if version >= 3 else None
        client_id = reader.string()
        client_host = reader.string()
        rebalance_timeout = reader.int32() if version >= 1 else -1
        session_timeout = reader.int32()
        if version == 0:
            rebalance_timeout = session_timeout  # v0 predates the field: the session timeout was both
        subscription = reader.bytes_()
        assignment = reader.bytes_()
        reader.tagged_fields()
        members.append(MemberMetadata(member_id, instance_id, client_id, client_host, rebalance_timeout,
                                      session_timeout, subscription, assignment))
    reader.tagged_fields()
    reader.end()
    return GroupMetadataValue(protocol_type, generation, protocol, leader, timestamp, tuple(members))
