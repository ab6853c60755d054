"""Batch header parsing, strict validation and in-place stamping."""

from __future__ import annotations

import struct

import pytest

from umbra.errors import CorruptMessage, InvalidRecord, UnsupportedForMessageFormat
from umbra.records.batch import (
    HEADER_SIZE,
    LOG_OVERHEAD,
    check_client_batch,
    increment_sequence,
    iter_batch_headers,
    parse_header,
    validate_record_set,
    write_base_offset,
    write_log_append_time,
    write_partition_leader_epoch,
)
from umbra.records.records import build_batch, decode_batch


def make_batch(count: int = 3, **kwargs: object) -> bytes:
    records = [(f"k{i}".encode(), f"v{i}".encode(), [], 1000 + i) for i in range(count)]
    return build_batch(records, **kwargs)  # type: ignore[arg-type]


def test_header_fields() -> None:
    batch = make_batch(3, base_offset=100, producer_id=7, producer_epoch=2, base_sequence=10,
                       partition_leader_epoch=4, is_transactional=True)
    header = parse_header(batch)
    assert header.position == 0
    assert header.base_offset == 100
    assert header.last_offset == 102
    assert header.next_offset == 103
    assert header.size_in_bytes == len(batch) == header.batch_length + LOG_OVERHEAD
    assert header.magic == 2
    assert header.partition_leader_epoch == 4
    assert header.record_count == 3
    assert (header.base_timestamp, header.max_timestamp) == (1000, 1002)
    assert (header.producer_id, header.producer_epoch, header.base_sequence) == (7, 2, 10)
    assert header.last_sequence == 12
    assert header.is_transactional and not header.is_control
    assert header.compression == 0 and header.timestamp_type == 0


def test_attribute_bits() -> None:
    header = parse_header(make_batch(1, compression=3, is_control=True, timestamp_type=1))
    assert header.compression == 3
    assert header.is_control
    assert header.timestamp_type == 1


def test_sequence_wraps_at_int32() -> None:
    assert increment_sequence(2**31 - 1, 1) == 0
    assert increment_sequence(2**31 - 2, 3) == 1
    header = parse_header(make_batch(3, producer_id=1, producer_epoch=0, base_sequence=2**31 - 2))
    assert header.last_sequence == 0


def test_iter_headers_stops_at_partial_batch() -> None:
    one, two = make_batch(2), make_batch(5, base_offset=2)
    buf = one + two + two[:30]
    headers = list(iter_batch_headers(buf))
    assert [h.position for h in headers] == [0, len(one)]
    assert [h.base_offset for h in headers] == [0, 2]
    assert list(iter_batch_headers(buf, start=len(one)))[0].base_offset == 2


def test_validate_accepts_good_set() -> None:
    buf = make_batch(2) + make_batch(4, base_offset=2, compression=4)
    headers = validate_record_set(buf)
    assert [h.record_count for h in headers] == [2, 4]


def test_validate_rejects_bad_crc() -> None:
    buf = bytearray(make_batch(3))
    buf[-1] ^= 0xFF
    with pytest.raises(CorruptMessage, match="CRC"):
        validate_record_set(buf)


@pytest.mark.parametrize("magic", [0, 1])
def test_validate_rejects_old_magic(magic: int) -> None:
    buf = bytearray(make_batch(1))
    buf[16] = magic
    with pytest.raises(UnsupportedForMessageFormat):
        validate_record_set(buf)


def test_validate_rejects_truncation_garbage_and_empty() -> None:
    batch = make_batch(2)
    with pytest.raises(CorruptMessage):
        validate_record_set(batch[:-1])
    with pytest.raises(CorruptMessage):
        validate_record_set(batch + b"\x00" * 5)
    with pytest.raises(InvalidRecord):
        validate_record_set(b"")
    short = bytearray(batch)
    struct.pack_into(">i", short, 8, 10)
    with pytest.raises(CorruptMessage, match="batchLength"):
        validate_record_set(short)


def test_client_checks() -> None:
    check_client_batch(parse_header(make_batch(2)))
    with pytest.raises(InvalidRecord):
        check_client_batch(parse_header(make_batch(1, is_control=True)))
    with pytest.raises(InvalidRecord):
        check_client_batch(parse_header(make_batch(1, producer_id=3, producer_epoch=0)))


def test_stamping_keeps_crc_valid() -> None:
    first, second = make_batch(2), make_batch(3)
    buf = bytearray(first + second)
    write_base_offset(buf, 0, 500)
    write_partition_leader_epoch(buf, 0, 9)
    write_base_offset(buf, len(first), 502)
    write_log_append_time(buf, len(first), 123456)
    headers = validate_record_set(buf)
    assert [h.base_offset for h in headers] == [500, 502]
    assert headers[0].partition_leader_epoch == 9
    assert headers[1].timestamp_type == 1 and headers[1].max_timestamp == 123456
    _, records = decode_batch(buf, len(first))
    assert [r.timestamp for r in records] == [123456] * 3
    assert [r.offset for r in records] == [502, 503, 504]


def test_stamping_memoryview() -> None:
    buf = bytearray(make_batch(1))
    view = memoryview(buf)
    write_base_offset(view, 0, 42)
    write_log_append_time(view, 0, 99)
    assert validate_record_set(buf)[0].base_offset == 42
    assert len(buf) >= HEADER_SIZE
