"""Zero-copy view of RecordBatch v2 headers, strict validation and in-place stamping.

Layout (big-endian), offsets from the start of the batch::

    baseOffset int64 @0 | batchLength int32 @8 | partitionLeaderEpoch int32 @12 | magic int8 @16
    crc uint32 @17 | attributes int16 @21 | lastOffsetDelta int32 @23 | baseTimestamp int64 @27
    maxTimestamp int64 @35 | producerId int64 @43 | producerEpoch int16 @51 | baseSequence int32 @53
    recordCount int32 @57 | records...

The CRC covers bytes ``[21, 12 + batchLength)``, so base offset and partition leader epoch can be
rewritten in place without recomputing it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import NamedTuple

from umbra.errors import CorruptMessage, InvalidRecord, UnsupportedForMessageFormat
from umbra.records.crc import Buffer, crc32c

BASE_OFFSET_OFFSET = 0
BATCH_LENGTH_OFFSET = 8
PARTITION_LEADER_EPOCH_OFFSET = 12
MAGIC_OFFSET = 16
CRC_OFFSET = 17
ATTRIBUTES_OFFSET = 21
LAST_OFFSET_DELTA_OFFSET = 23
BASE_TIMESTAMP_OFFSET = 27
MAX_TIMESTAMP_OFFSET = 35
PRODUCER_ID_OFFSET = 43
PRODUCER_EPOCH_OFFSET = 51
BASE_SEQUENCE_OFFSET = 53
RECORD_COUNT_OFFSET = 57
HEADER_SIZE = 61
LOG_OVERHEAD = 12  # baseOffset + batchLength: the bytes not counted by batchLength
# Smallest legal batchLength: the header minus LOG_OVERHEAD (a batch with zero records).
MIN_BATCH_LENGTH = HEADER_SIZE - LOG_OVERHEAD
CURRENT_MAGIC = 2

COMPRESSION_MASK = 0x07
TIMESTAMP_TYPE_MASK = 0x08
TRANSACTIONAL_MASK = 0x10
CONTROL_MASK = 0x20

CREATE_TIME = 0
LOG_APPEND_TIME = 1
NO_PRODUCER_ID = -1
NO_SEQUENCE = -1

_HEADER = struct.Struct(">qiibIhiqqqhii")
_INT64 = struct.Struct(">q")
_INT32 = struct.Struct(">i")
_UINT32 = struct.Struct(">I")
_INT16 = struct.Struct(">h")
_LENGTH = struct.Struct(">i")

assert _HEADER.size == HEADER_SIZE


class BatchHeader(NamedTuple):
    """The 61-byte header of one batch, plus where it starts in the buffer it was read from."""

    position: int
    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    record_count: int

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.last_offset_delta + 1

    @property
    def size_in_bytes(self) -> int:
        return self.batch_length + LOG_OVERHEAD

    @property
    def end_position(self) -> int:
        return self.position + self.batch_length + LOG_OVERHEAD

    @property
    def compression(self) -> int:
        return self.attributes & COMPRESSION_MASK

    @property
    def timestamp_type(self) -> int:
        """0 = CreateTime, 1 = LogAppendTime."""
        return (self.attributes & TIMESTAMP_TYPE_MASK) >> 3

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & TRANSACTIONAL_MASK)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & CONTROL_MASK)

    @property
    def has_producer_id(self) -> bool:
        return self.producer_id >= 0

    @property
    def last_sequence(self) -> int:
        """Sequence of the last record; wraps at int32 like Kafka. -1 for non-idempotent batches."""
        if self.base_sequence < 0:
            return NO_SEQUENCE
        return increment_sequence(self.base_sequence, self.last_offset_delta)


def increment_sequence(sequence: int, increment: int) -> int:
    """``sequence + increment`` wrapping past int32 max back to 0 (Kafka's sequence arithmetic)."""
    if sequence > 0x7FFFFFFF - increment:
        return increment - (0x7FFFFFFF - sequence) - 1
    return sequence + increment


def parse_header(buf: Buffer, position: int = 0) -> BatchHeader:
    """Parse the header at ``position``; the caller guarantees 61 bytes are available."""
    return BatchHeader(position, *_HEADER.unpack_from(buf, position))


def peek_batch_size(buf: Buffer, position: int = 0) -> int:
    """Size in bytes (batchLength + 12) of the batch at ``position``; needs 12 bytes available."""
    return int(_LENGTH.unpack_from(buf, position + BATCH_LENGTH_OFFSET)[0]) + LOG_OVERHEAD


def iter_batch_headers(buf: Buffer, start: int = 0) -> Iterator[BatchHeader]:
    """Yield headers of the complete batches in ``buf`` from ``start``; stop at a partial trailing batch.

    No CRC check: this is for fast walks over data already validated (stored segments, our own output).
    A batchLength too small to be a batch also ends the walk.
    """
    end = len(buf)
    position = start
    unpack = _HEADER.unpack_from
    while position + HEADER_SIZE <= end:
        header = BatchHeader(position, *unpack(buf, position))
        if header.batch_length < MIN_BATCH_LENGTH:
            return
        next_position = position + header.batch_length + LOG_OVERHEAD
        if next_position > end:
            return
        yield header
        position = next_position


def batch_crc(buf: Buffer, header: BatchHeader) -> int:
    """The CRC32C the batch at ``header.position`` should carry (computed, not read)."""
    view = memoryview(buf)
    return crc32c(view[header.position + ATTRIBUTES_OFFSET : header.end_position])


def validate_record_set(buf: Buffer) -> list[BatchHeader]:
    """Strictly validate a record set from the network and return its batch headers.

    Checks framing, magic, batchLength, CRC, non-negative counts and the absence of trailing bytes.
    Raises :class:`CorruptMessage` for damaged bytes, :class:`UnsupportedForMessageFormat` for magic 0/1,
    and :class:`InvalidRecord` for an empty record set: a produce request must carry at least one batch
    (Kafka rejects v3+ produce requests that do not hold exactly one batch with INVALID_RECORD). Callers that
    accept an empty set (replication) check ``len(buf) == 0`` before calling.
    """
    total = len(buf)
    if total == 0:
        raise InvalidRecord("record set is empty")
    view = memoryview(buf)
    headers: list[BatchHeader] = []
    position = 0
    while position < total:
        remaining = total - position
        if remaining < HEADER_SIZE:
            # Magic sits at byte 16; report old formats precisely even when the rest is short.
            if remaining > MAGIC_OFFSET and view[position + MAGIC_OFFSET] in (0, 1):
                raise UnsupportedForMessageFormat("message format v0/v1 is not supported; use RecordBatch v2")
            raise CorruptMessage(f"truncated record batch at byte {position}: {remaining} bytes left")
        header = BatchHeader(position, *_HEADER.unpack_from(view, position))
        if header.magic != CURRENT_MAGIC:
            if header.magic in (0, 1):
                raise UnsupportedForMessageFormat("message format v0/v1 is not supported; use RecordBatch v2")
            raise CorruptMessage(f"batch at byte {position} has unknown magic {header.magic}")
        if header.batch_length < MIN_BATCH_LENGTH:
            raise CorruptMessage(f"batch at byte {position} has batchLength {header.batch_length} < 49")
        end = header.end_position
        if end > total:
            raise CorruptMessage(
                f"batch at byte {position} declares {header.size_in_bytes} bytes but only {remaining} remain"
            )
        computed = crc32c(view[position + ATTRIBUTES_OFFSET : end])
        if computed != header.crc:
            raise CorruptMessage(
                f"batch at offset {header.base_offset} (byte {position}) has CRC {header.crc:#010x}, "
                f"computed {computed:#010x}"
            )
        if header.record_count < 0:
            raise CorruptMessage(f"batch at byte {position} has negative record count {header.record_count}")
        if header.last_offset_delta < 0:
            raise CorruptMessage(f"batch at byte {position} has negative lastOffsetDelta")
        headers.append(header)
        position = end
    return headers


def check_client_batch(header: BatchHeader) -> None:
    """Semantic checks a leader applies to producer batches (not to replicated ones).

    Replicated batches may legitimately be empty or sparse after compaction; producer batches may not.
    """
    if header.is_control:
        raise InvalidRecord("clients may not write control batches")
    if header.record_count == 0:
        raise InvalidRecord("record batch holds no records")
    if header.last_offset_delta != header.record_count - 1:
        raise InvalidRecord(
            f"inconsistent batch: lastOffsetDelta {header.last_offset_delta} for {header.record_count} records"
        )
    if header.producer_id >= 0 and header.base_sequence < 0:
        raise InvalidRecord(f"idempotent batch from producer {header.producer_id} has no base sequence")


def write_base_offset(buf: bytearray | memoryview, position: int, offset: int) -> None:
    """Stamp the base offset in place (outside the CRC)."""
    _INT64.pack_into(buf, position + BASE_OFFSET_OFFSET, offset)


def write_partition_leader_epoch(buf: bytearray | memoryview, position: int, epoch: int) -> None:
    """Stamp the partition leader epoch in place (outside the CRC)."""
    _INT32.pack_into(buf, position + PARTITION_LEADER_EPOCH_OFFSET, epoch)


def write_log_append_time(buf: bytearray | memoryview, position: int, timestamp_ms: int) -> None:
    """Mark the batch LogAppendTime with ``timestamp_ms`` as maxTimestamp and recompute its CRC.

    Readers use maxTimestamp as every record's timestamp for LogAppendTime batches.
    """
    attributes = _INT16.unpack_from(buf, position + ATTRIBUTES_OFFSET)[0]
    _INT16.pack_into(buf, position + ATTRIBUTES_OFFSET, attributes | TIMESTAMP_TYPE_MASK)
    _INT64.pack_into(buf, position + MAX_TIMESTAMP_OFFSET, timestamp_ms)
    write_crc(buf, position)


def write_crc(buf: bytearray | memoryview, position: int) -> None:
    """Recompute and store the CRC of the batch at ``position``."""
    end = position + peek_batch_size(buf, position)
    crc = crc32c(memoryview(buf)[position + ATTRIBUTES_OFFSET : end])
    _UINT32.pack_into(buf, position + CRC_OFFSET, crc)
