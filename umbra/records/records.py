"""Record-level encode/decode for RecordBatch v2.

Not the hot path: the broker moves batches verbatim. This is for internal topics, timestamp lookups
and tests. Record layout (varints are zigzag)::

    length varint | attributes int8 | timestampDelta varlong | offsetDelta varint
    keyLength varint | key | valueLength varint | value | headerCount varint
    [headerKeyLength varint | headerKey utf8 | headerValueLength varint | headerValue]
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

from umbra.errors import CorruptMessage
from umbra.records import compression as codecs
from umbra.records.batch import (
    CONTROL_MASK,
    CURRENT_MAGIC,
    HEADER_SIZE,
    LOG_APPEND_TIME,
    LOG_OVERHEAD,
    TIMESTAMP_TYPE_MASK,
    TRANSACTIONAL_MASK,
    BatchHeader,
    parse_header,
    write_crc,
)
from umbra.records.crc import Buffer

Headers = Sequence[tuple[str, bytes | None]]
RecordInput = tuple[bytes | None, bytes | None, Headers, int]  # key, value, headers, timestamp_ms

_HEADER_PREFIX = struct.Struct(">qiibIhiqqqhii")


@dataclass(frozen=True, slots=True)
class Record:
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)


def zigzag_encode(value: int) -> int:
    return (value << 1) ^ (value >> 63)


def zigzag_decode(value: int) -> int:
    return (value >> 1) ^ -(value & 1)


def encode_varint(value: int) -> bytes:
    """Zigzag varint (varlong-safe) as Kafka writes record fields."""
    unsigned = zigzag_encode(value) & 0xFFFFFFFFFFFFFFFF
    out = bytearray()
    while unsigned >= 0x80:
        out.append((unsigned & 0x7F) | 0x80)
        unsigned >>= 7
    out.append(unsigned)
    return bytes(out)


def decode_varint(buf: Buffer, position: int) -> tuple[int, int]:
    """Decode a zigzag varint at ``position``; return (value, next position)."""
    result = 0
    shift = 0
    end = len(buf)
    while True:
        if position >= end:
            raise CorruptMessage("truncated varint")
        byte = buf[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return zigzag_decode(result), position
        shift += 7
        if shift > 63:
            raise CorruptMessage("varint longer than 10 bytes")


def _encode_bytes(value: bytes | None) -> bytes:
    if value is None:
        return encode_varint(-1)
    return encode_varint(len(value)) + value


def _encode_record(offset_delta: int, timestamp_delta: int, key: bytes | None, value: bytes | None,
                   headers: Headers) -> bytes:
    parts = [b"\x00", encode_varint(timestamp_delta), encode_varint(offset_delta), _encode_bytes(key),
             _encode_bytes(value), encode_varint(len(headers))]
    for header_key, header_value in headers:
        parts.append(_encode_bytes(header_key.encode("utf-8")))
        parts.append(_encode_bytes(header_value))
    body = b"".join(parts)
    return encode_varint(len(body)) + body


def build_batch(
    records: Sequence[RecordInput],
    *,
    base_offset: int = 0,
    compression: int = 0,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    partition_leader_epoch: int = -1,
    is_transactional: bool = False,
    is_control: bool = False,
    timestamp_type: int = 0,
) -> bytes:
    """Encode one v2 batch (offset deltas 0..n-1) with a valid CRC."""
    if not records:
        raise ValueError("a batch needs at least one record")
    base_timestamp = records[0][3]
    max_timestamp = max(record[3] for record in records)
    body = b"".join(
        _encode_record(index, timestamp - base_timestamp, key, value, headers)
        for index, (key, value, headers, timestamp) in enumerate(records)
    )
    if compression:
        body = codecs.compress(compression, body)
    attributes = compression & 0x07
    if timestamp_type == LOG_APPEND_TIME:
        attributes |= TIMESTAMP_TYPE_MASK
    if is_transactional:
        attributes |= TRANSACTIONAL_MASK
    if is_control:
        attributes |= CONTROL_MASK
    batch = bytearray(HEADER_SIZE + len(body))
    _HEADER_PREFIX.pack_into(
        batch, 0, base_offset, HEADER_SIZE - LOG_OVERHEAD + len(body), partition_leader_epoch, CURRENT_MAGIC, 0,
        attributes, len(records) - 1, base_timestamp, max_timestamp, producer_id, producer_epoch, base_sequence,
        len(records),
    )
    batch[HEADER_SIZE:] = body
    write_crc(batch, 0)
    return bytes(batch)


def decode_batch(buf: Buffer, position: int = 0, *, max_decompressed: int = codecs.DEFAULT_DECOMPRESSED_LIMIT
                 ) -> tuple[BatchHeader, list[Record]]:
    """Decode the batch at ``position`` into its header and records (decompressing as needed, to at most
    ``max_decompressed`` bytes).

    The CRC is not checked here (use ``validate_record_set`` for untrusted input); malformed record
    bytes raise :class:`CorruptMessage`. LogAppendTime batches report maxTimestamp for every record.
    """
    view = memoryview(buf)
    if len(view) - position < HEADER_SIZE:
        raise CorruptMessage("truncated batch header")
    header = parse_header(view, position)
    end = header.end_position
    if header.batch_length < HEADER_SIZE - LOG_OVERHEAD or end > len(view):
        raise CorruptMessage("batch length overruns the buffer")
    body: Buffer = view[position + HEADER_SIZE : end]
    if header.compression:
        body = codecs.decompress(header.compression, body, max_decompressed)
    log_append_time = header.timestamp_type == LOG_APPEND_TIME
    records: list[Record] = []
    cursor = 0
    try:
        for _ in range(header.record_count):
            length, cursor = decode_varint(body, cursor)
            record_end = cursor + length
            if length < 0 or record_end > len(body):
                raise CorruptMessage("record overruns its batch")
            cursor += 1  # attributes: unused
            timestamp_delta, cursor = decode_varint(body, cursor)
            offset_delta, cursor = decode_varint(body, cursor)
            key, cursor = _decode_bytes(body, cursor)
            value, cursor = _decode_bytes(body, cursor)
            header_count, cursor = decode_varint(body, cursor)
            if header_count < 0:
                raise CorruptMessage("negative header count")
            record_headers: list[tuple[str, bytes | None]] = []
            for _ in range(header_count):
                header_key, cursor = _decode_bytes(body, cursor)
                header_value, cursor = _decode_bytes(body, cursor)
                if header_key is None:
                    raise CorruptMessage("null header key")
                record_headers.append((header_key.decode("utf-8"), header_value))
            if cursor != record_end:
                raise CorruptMessage("record length does not match its fields")
            timestamp = header.max_timestamp if log_append_time else header.base_timestamp + timestamp_delta
            records.append(Record(header.base_offset + offset_delta, timestamp, key, value, record_headers))
    except UnicodeDecodeError as exc:
        raise CorruptMessage(f"header key is not UTF-8: {exc}") from exc
    if cursor != len(body):
        raise CorruptMessage(f"{len(body) - cursor} bytes after the batch's {header.record_count} records")
    return header, records


def _decode_bytes(buf: Buffer, position: int) -> tuple[bytes | None, int]:
    length, position = decode_varint(buf, position)
    if length < 0:
        return None, position
    end = position + length
    if end > len(buf):
        raise CorruptMessage("field overruns its record")
    return bytes(buf[position:end]), end
