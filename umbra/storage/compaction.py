"""Compaction rules for one batch, as Kafka's log cleaner applies them (no I/O: ``cleaner.py`` does that).

A record is kept when it has a key, no later record of the same key is in the offset map, and — for a
tombstone (null value) — its batch's delete horizon has not passed. A batch keeps its base offset, last offset
delta, producer id, epoch and base sequence (Kafka's ``overrideLastOffset``), so offsets never change and
producer state rebuilt from the headers stays right. A batch with nothing left is dropped, except the last
batch of a producer that still has state, which is kept as an empty batch (Kafka's ``RETAIN_EMPTY``). The
first time a batch holding a tombstone is cleaned, its delete horizon (``now + delete.retention.ms``) is
stamped into its base timestamp with attribute bit 0x40 (KIP-534); record timestamps stay the same.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from umbra.records import compression as codecs
from umbra.records.batch import (
    COMPRESSION_MASK,
    CURRENT_MAGIC,
    HEADER_SIZE,
    LOG_APPEND_TIME,
    LOG_OVERHEAD,
    BatchHeader,
    write_crc,
)
from umbra.records.crc import Buffer
from umbra.records.records import Record, decode_batch, encode_varint
from umbra.records.validation import RecordError, RecordValidationError, keyless_records
from umbra.storage.config import LogConfig
from umbra.storage.segment import Segment

DELETE_HORIZON_MASK = 0x40
_HEADER = struct.Struct(">qiibIhiqqqhii")
_NULL = encode_varint(-1)


@dataclass(frozen=True, slots=True)
class CleaningView:
    """What the cleaner needs of a log, taken under its lock."""

    segments: tuple[Segment, ...]  # the active segment last
    sizes: tuple[int, ...]
    log_start_offset: int
    high_watermark: int
    config: LogConfig
    producer_last_offsets: frozenset[int]  # last offset of each producer's newest batch


@dataclass(frozen=True, slots=True)
class FilteredBatch:
    data: bytes | None  # None: the batch is dropped
    records_removed: int


def require_keys(buf: Buffer, headers: Sequence[BatchHeader], log_name: str, max_decompressed: int) -> None:
    """Producer batches for a compacted topic: every record needs a key. Kafka refuses the whole batch with
    INVALID_RECORD and names each keyless record (KIP-467): RecordValidationError carries them."""
    keyless = keyless_records(buf, headers, max_decompressed)
    if keyless:
        message = f"Compacted topic cannot accept message without key in topic partition {log_name}"
        raise RecordValidationError([RecordError(index, message) for index in keyless])


def has_delete_horizon(header: BatchHeader) -> bool:
    return bool(header.attributes & DELETE_HORIZON_MASK)


def filter_batch(raw: bytes, header: BatchHeader, latest: Mapping[bytes, int], *, now_ms: int,
                 delete_retention_ms: int, keep_empty: bool) -> FilteredBatch:
    """Apply compaction to one stored batch ``raw`` (its header ``header``, position 0)."""
    if header.is_control:
        return FilteredBatch(raw, 0)
    _, records = decode_batch(raw)
    horizon_passed = has_delete_horizon(header) and now_ms >= header.base_timestamp
    kept = [record for record in records
            if record.key is not None and latest.get(record.key, -1) <= record.offset
            and (record.value is not None or not horizon_passed)]
    removed = len(records) - len(kept)
    stamp_horizon = not has_delete_horizon(header) and any(record.value is None for record in kept)
    if not kept:
        if keep_empty:
            return FilteredBatch(_empty_batch(header), removed)
        return FilteredBatch(None, removed)
    if removed == 0 and not stamp_horizon:
        return FilteredBatch(raw, 0)
    horizon = now_ms + delete_retention_ms if stamp_horizon else None
    return FilteredBatch(_rebuild(header, kept, horizon), removed)


def _rebuild(header: BatchHeader, kept: list[Record], horizon: int | None) -> bytes:
    attributes = header.attributes
    if horizon is not None:
        attributes |= DELETE_HORIZON_MASK
        base_timestamp = horizon
    elif has_delete_horizon(header):
        base_timestamp = header.base_timestamp
    else:
        base_timestamp = kept[0].timestamp
    if header.timestamp_type == LOG_APPEND_TIME:
        max_timestamp = header.max_timestamp
    else:
        max_timestamp = max(record.timestamp for record in kept)
    body = b"".join(_encode_record(record, header.base_offset, base_timestamp) for record in kept)
    if header.compression:
        body = codecs.compress(header.compression, body)
    return _with_header(header, attributes, base_timestamp, max_timestamp, len(kept), body)


def _empty_batch(header: BatchHeader) -> bytes:
    """Header only: keeps the producer's last sequence and the batch's offsets (Kafka's writeEmptyHeader)."""
    attributes = header.attributes & ~COMPRESSION_MASK & ~DELETE_HORIZON_MASK
    return _with_header(header, attributes, header.max_timestamp, header.max_timestamp, 0, b"")


def _with_header(header: BatchHeader, attributes: int, base_timestamp: int, max_timestamp: int, count: int,
                 body: bytes) -> bytes:
    batch = bytearray(HEADER_SIZE + len(body))
    _HEADER.pack_into(batch, 0, header.base_offset, HEADER_SIZE - LOG_OVERHEAD + len(body),
                      header.partition_leader_epoch, CURRENT_MAGIC, 0, attributes, header.last_offset_delta,
                      base_timestamp, max_timestamp, header.producer_id, header.producer_epoch, header.base_sequence,
                      count)
    batch[HEADER_SIZE:] = body
    write_crc(batch, 0)
    return bytes(batch)


def _encode_record(record: Record, base_offset: int, base_timestamp: int) -> bytes:
    parts = [b"\x00", encode_varint(record.timestamp - base_timestamp), encode_varint(record.offset - base_offset),
             _encode_bytes(record.key), _encode_bytes(record.value), encode_varint(len(record.headers))]
    for key, value in record.headers:
        parts.append(_encode_bytes(key.encode("utf-8")))
        parts.append(_encode_bytes(value))
    body = b"".join(parts)
    return encode_varint(len(body)) + body


def _encode_bytes(value: bytes | None) -> bytes:
    return _NULL if value is None else encode_varint(len(value)) + value
