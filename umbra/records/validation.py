"""Record-level validation of produced batches, as Kafka's LogValidator does it.

The batch CRC only says the producer's bytes arrived intact; it says nothing about whether they are records.
A producer (or an attacker) can send a batch whose CRC is right and whose records are not: lengths that
overrun, bad varints, a record count that does not match, offset deltas out of order. Stored, such a batch
breaks every consumer that reads it, the log cleaner, and every shadow that copies it. So every produced
batch is walked record by record (decompressed first, within the log's limit) and refused with
CORRUPT_MESSAGE unless it holds exactly ``record_count`` well-formed records with offset deltas 0, 1, 2...

Rules about single records (KIP-467) fail the whole batch too, but name the records that broke them: a
compacted topic's keyless records (``keyless_records``) raise ``RecordValidationError``, whose
``record_errors`` the Produce response carries (v8+) as batch indexes and messages.

The walk is aiokafka's record reader, compiled (Cython): about 0.1 µs a record, where a walk in Python
costs several times that. At 100-byte records that is still the broker's largest produce cost after the
copy (``benchmarks/produce_consume.py`` reports the broker's CPU; docs/performance.md has the figures).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from operator import attrgetter

from aiokafka.errors import CorruptRecordException
from aiokafka.record.default_records import DefaultRecordBatch

from umbra.errors import CorruptMessage, ErrorCode, InvalidRecord
from umbra.records import compression
from umbra.records.batch import ATTRIBUTES_OFFSET, BATCH_LENGTH_OFFSET, HEADER_SIZE, LOG_OVERHEAD, BatchHeader
from umbra.records.crc import Buffer

log = logging.getLogger("umbra.records")
_COMPRESSION_BITS = 0x07
_INT16 = struct.Struct(">h")
_INT32 = struct.Struct(">i")
_OFFSET = attrgetter("offset")

if "_crecords" not in DefaultRecordBatch.__module__:  # pragma: no cover - the pinned wheel is compiled
    log.warning("aiokafka's compiled record reader is missing: validating produced records will be slow")


@dataclass(frozen=True, slots=True)
class RecordError:
    """One record a rule refused: its index in the produced record set and why (Kafka's ProduceResponse.RecordError)."""

    batch_index: int
    message: str | None

    def __str__(self) -> str:  # Kafka's wording, which its partition error message lists
        message = "null" if self.message is None else f"'{self.message}'"
        return f"RecordError(batchIndex={self.batch_index}, message={message})"


class RecordValidationError(InvalidRecord):
    """Records of a produced batch broke a per-record rule (KIP-467). Nothing of the batch is appended; the
    partition's error is INVALID_RECORD with Kafka's summary as its message, and
    ``record_errors`` names the records at fault. Kafka lists only those: clients report the others as
    refused because of them."""

    def __init__(self, record_errors: Sequence[RecordError]) -> None:
        shown = ", ".join(str(error) for error in record_errors[:3])
        super().__init__(f"One or more records have been rejected due to {len(record_errors)} record errors in "
                         f"total, and only showing the first three errors at most: [{shown}]", ErrorCode.INVALID_RECORD)
        self.record_errors = tuple(record_errors)


def keyless_records(buf: Buffer, headers: Sequence[BatchHeader], max_decompressed: int) -> list[int]:
    """The indexes (over the whole record set, in order) of the records without a key. Call it after
    ``validate_records``: the records are known to be well formed."""
    view = memoryview(buf)
    indexes: list[int] = []
    first = 0
    for header in headers:
        batch: Buffer = view[header.position : header.end_position]
        if header.compression:
            batch = _decompressed_batch(view, header, max_decompressed)
        try:
            indexes.extend(index for index, record in enumerate(DefaultRecordBatch(batch), first)
                           if record.key is None)
        except CorruptRecordException as exc:
            raise CorruptMessage(f"malformed records in the batch at offset {header.base_offset}: {exc}") from None
        first += header.record_count
    return indexes


def validate_records(buf: Buffer, headers: list[BatchHeader], max_decompressed: int) -> None:
    """Raise CorruptMessage unless every batch of ``buf`` holds exactly its well-formed records."""
    view = memoryview(buf)
    for header in headers:
        batch: Buffer = view[header.position : header.end_position]
        if header.compression:
            batch = _decompressed_batch(view, header, max_decompressed)
        try:
            # map + list keep the per-record work in C: 115 ns a record here, against 165 for a Python loop.
            offsets = list(map(_OFFSET, DefaultRecordBatch(batch)))
        except CorruptRecordException as exc:
            raise CorruptMessage(f"malformed records in the batch at offset {header.base_offset}: {exc}") from None
        count = len(offsets)
        if offsets != list(range(header.base_offset, header.base_offset + count)):
            index = next(i for i, offset in enumerate(offsets) if offset != header.base_offset + i)
            raise CorruptMessage(f"record {index} of the batch at offset {header.base_offset} has offset delta "
                                 f"{offsets[index] - header.base_offset}, expected {index}")
        if count != header.record_count or count - 1 != header.last_offset_delta:
            raise CorruptMessage(f"the batch at offset {header.base_offset} declares {header.record_count} records "
                                 f"(last offset delta {header.last_offset_delta}) and holds {count}")


def _decompressed_batch(view: memoryview, header: BatchHeader, max_decompressed: int) -> bytearray:
    """The batch with its records decompressed (within ``max_decompressed``) and its codec bits cleared."""
    body = compression.decompress(header.compression, view[header.position + HEADER_SIZE : header.end_position],
                                  max_decompressed)
    batch = bytearray(view[header.position : header.position + HEADER_SIZE])
    batch += body
    _INT32.pack_into(batch, BATCH_LENGTH_OFFSET, len(batch) - LOG_OVERHEAD)
    _INT16.pack_into(batch, ATTRIBUTES_OFFSET, header.attributes & ~_COMPRESSION_BITS)
    return batch
