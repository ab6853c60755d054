"""RecordBatch v2: zero-copy header views, CRC32C, compression and (slow-path) record codecs."""

from umbra.records.batch import (
    HEADER_SIZE,
    LOG_OVERHEAD,
    BatchHeader,
    iter_batch_headers,
    parse_header,
    validate_record_set,
    write_base_offset,
    write_log_append_time,
    write_partition_leader_epoch,
)
from umbra.records.crc import crc32c
from umbra.records.records import Record, build_batch, decode_batch

__all__ = [
    "HEADER_SIZE",
    "LOG_OVERHEAD",
    "BatchHeader",
    "Record",
    "build_batch",
    "crc32c",
    "decode_batch",
    "iter_batch_headers",
    "parse_header",
    "validate_record_set",
    "write_base_offset",
    "write_log_append_time",
    "write_partition_leader_epoch",
]
