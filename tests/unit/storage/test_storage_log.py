"""Log appends, reads, segment rolls, idempotence, timestamps and leader epochs."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from conftest import make_batch

from umbra.errors import (
    InvalidProducerEpoch,
    InvalidRecord,
    MessageTooLarge,
    OffsetOutOfRange,
    OutOfOrderSequence,
)
from umbra.records.batch import iter_batch_headers, validate_record_set
from umbra.records.records import decode_batch
from umbra.storage.config import LogConfig
from umbra.storage.log import Log, LogEndOffsetMismatch

Opener = Callable[..., Log]


def append(log: Log, count: int = 1, now_ms: int = 10_000, epoch: int = 0, **kwargs: object) -> tuple[int, int]:
    result = log.append_as_leader(make_batch(count, **kwargs), leader_epoch=epoch, now_ms=now_ms)
    log.high_watermark = log.log_end_offset
    return result.base_offset, result.last_offset


def offsets_of(data: bytes) -> list[tuple[int, int]]:
    return [(h.base_offset, h.last_offset) for h in validate_record_set(data)]


def test_append_assigns_offsets_and_reads_back(open_log: Opener) -> None:
    log = open_log()
    assert (log.log_start_offset, log.log_end_offset, log.high_watermark) == (0, 0, 0)
    assert append(log, 3, epoch=5) == (0, 2)
    assert append(log, 2, epoch=5) == (3, 4)
    assert log.log_end_offset == 5 and log.last_stable_offset == 5
    data = log.read(0, 1 << 20)
    headers = validate_record_set(data)
    assert offsets_of(data) == [(0, 2), (3, 4)]
    assert {h.partition_leader_epoch for h in headers} == {5}
    assert log.read(5, 1000) == b""


def test_read_inside_batch_returns_whole_batch(open_log: Opener) -> None:
    log = open_log()
    append(log, 5)
    append(log, 5)
    assert offsets_of(log.read(7, 1 << 20)) == [(5, 9)]
    assert offsets_of(log.read(3, 1 << 20)) == [(0, 4), (5, 9)]


def test_max_bytes_and_min_one_batch(open_log: Opener) -> None:
    log = open_log()
    for _ in range(3):
        append(log, 1, size=200)
    size = len(log.read(0, 1 << 20)) // 3
    assert offsets_of(log.read(0, size * 2 + 10)) == [(0, 0), (1, 1)]
    assert offsets_of(log.read(0, 10)) == [(0, 0)]
    assert log.read(0, 10, min_one_batch=False) == b""
    assert offsets_of(log.read(0, 1 << 20, max_offset=2)) == [(0, 0), (1, 1)]
    assert log.read(0, 1 << 20, max_offset=0) == b""


def test_offset_out_of_range(open_log: Opener) -> None:
    log = open_log()
    append(log, 2)
    with pytest.raises(OffsetOutOfRange):
        log.read(3, 100)
    with pytest.raises(OffsetOutOfRange):
        log.read(-1, 100)


def test_segment_rolls_and_cross_segment_reads(open_log: Opener) -> None:
    log = open_log(LogConfig(segment_bytes=600, index_interval_bytes=100))
    for _ in range(20):
        append(log, 2, size=50)
    assert log.segment_count > 3
    data = log.read(0, 1 << 20)
    assert offsets_of(data) == [(i, i + 1) for i in range(0, 40, 2)]
    for target in (0, 13, 27, 39):
        first = validate_record_set(log.read(target, 1))[0]
        assert first.base_offset <= target <= first.last_offset
    log.close()
    reopened = open_log(LogConfig(segment_bytes=600, index_interval_bytes=100))
    assert reopened.log_end_offset == 40
    assert reopened.read(0, 1 << 20) == data


def test_segment_ms_roll(open_log: Opener) -> None:
    log = open_log(LogConfig(segment_ms=1000))
    append(log, 1, now_ms=0)
    append(log, 1, now_ms=500)
    assert log.segment_count == 1
    append(log, 1, now_ms=1501)
    assert log.segment_count == 2


def test_message_too_large_and_client_checks(open_log: Opener) -> None:
    log = open_log(LogConfig(max_message_bytes=200))
    with pytest.raises(MessageTooLarge):
        append(log, 1, size=300)
    with pytest.raises(InvalidRecord):
        append(log, 1, is_control=True)
    assert log.log_end_offset == 0


def test_log_append_time(open_log: Opener) -> None:
    log = open_log(LogConfig(message_timestamp_type="LogAppendTime"))
    result = log.append_as_leader(make_batch(2, timestamp=5), leader_epoch=0, now_ms=777)
    assert result.log_append_time_ms == 777
    header, records = decode_batch(log.read(0, 1 << 20))
    assert header.timestamp_type == 1
    assert [r.timestamp for r in records] == [777, 777]


def test_idempotent_duplicate_and_out_of_order(open_log: Opener) -> None:
    log = open_log()
    pid = {"producer_id": 42, "producer_epoch": 0}
    assert append(log, 3, base_sequence=0, **pid) == (0, 2)
    assert append(log, 2, base_sequence=3, **pid) == (3, 4)
    retry = log.append_as_leader(make_batch(3, base_sequence=0, **pid), leader_epoch=0, now_ms=1)
    assert retry.duplicate and (retry.base_offset, retry.last_offset) == (0, 2)
    assert log.log_end_offset == 5
    with pytest.raises(OutOfOrderSequence):
        append(log, 1, base_sequence=7, **pid)
    with pytest.raises(OutOfOrderSequence):
        append(log, 1, base_sequence=3, producer_id=42, producer_epoch=1)
    assert append(log, 1, base_sequence=0, producer_id=42, producer_epoch=1) == (5, 5)
    with pytest.raises(InvalidProducerEpoch):
        append(log, 1, base_sequence=5, **pid)
    assert log.max_producer_id == 42


def test_producer_state_survives_reopen(open_log: Opener) -> None:
    log = open_log()
    append(log, 3, base_sequence=0, producer_id=7, producer_epoch=2)
    append(log, 1)
    log.close()
    log = open_log()
    retry = log.append_as_leader(make_batch(3, base_sequence=0, producer_id=7, producer_epoch=2),
                                 leader_epoch=0, now_ms=1)
    assert retry.duplicate and retry.base_offset == 0
    with pytest.raises(OutOfOrderSequence):
        append(log, 1, base_sequence=9, producer_id=7, producer_epoch=2)
    assert append(log, 1, base_sequence=3, producer_id=7, producer_epoch=2) == (4, 4)
    assert log.max_producer_id == 7


def test_append_at_offsets_keeps_gaps(open_log: Opener) -> None:
    log = open_log()
    source = make_batch(3, base_offset=0, partition_leader_epoch=1) + make_batch(2, base_offset=10)
    result = log.append_at_offsets(source, expected_start_offset=0, leader_epoch=8)
    assert (result.base_offset, result.last_offset) == (0, 11)
    assert log.log_end_offset == 12
    log.high_watermark = 12
    data = log.read(0, 1 << 20)
    assert offsets_of(data) == [(0, 2), (10, 11)]
    assert {h.partition_leader_epoch for h in validate_record_set(data)} == {8}
    assert offsets_of(log.read(5, 1 << 20)) == [(10, 11)]
    with pytest.raises(LogEndOffsetMismatch):
        log.append_at_offsets(make_batch(1, base_offset=12), expected_start_offset=11, leader_epoch=8)
    with pytest.raises(OffsetOutOfRange):  # LogEndOffsetMismatch is an OffsetOutOfRange
        log.append_at_offsets(make_batch(1, base_offset=12), expected_start_offset=13, leader_epoch=8)
    with pytest.raises(InvalidRecord):
        log.append_at_offsets(make_batch(1, base_offset=11), expected_start_offset=12, leader_epoch=8)
    empty = log.append_at_offsets(b"", expected_start_offset=12, leader_epoch=8)
    assert empty.last_offset == 11 and log.log_end_offset == 12


def test_append_at_offsets_preserves_bytes_and_follower_epochs(open_log: Opener) -> None:
    log = open_log()
    source = make_batch(2, base_offset=0, partition_leader_epoch=3, producer_id=5, producer_epoch=0,
                        base_sequence=0) + make_batch(1, base_offset=2, partition_leader_epoch=4)
    log.append_at_offsets(source, expected_start_offset=0, leader_epoch=None)
    log.high_watermark = log.log_end_offset
    assert log.read(0, 1 << 20) == source
    assert log.end_offset_for_leader_epoch(3) == (3, 2)
    assert log.end_offset_for_leader_epoch(4) == (4, 3)
    assert log.max_producer_id == 5


def test_leader_epoch_cache(open_log: Opener) -> None:
    log = open_log()
    append(log, 2, epoch=1)
    append(log, 2, epoch=1)
    append(log, 3, epoch=3)
    assert log.end_offset_for_leader_epoch(3) == (3, 7)
    assert log.end_offset_for_leader_epoch(1) == (1, 4)
    assert log.end_offset_for_leader_epoch(2) == (1, 4)
    assert log.end_offset_for_leader_epoch(0) == (0, 0)
    assert log.end_offset_for_leader_epoch(9) == (-1, -1)
    log.close()
    log = open_log()
    assert log.end_offset_for_leader_epoch(2) == (1, 4)
    log.truncate_to(4)
    assert log.end_offset_for_leader_epoch(1) == (1, 4)


def test_offset_for_timestamp_and_max_timestamp(open_log: Opener) -> None:
    log = open_log(LogConfig(segment_bytes=400, index_interval_bytes=50))
    for i in range(20):
        append(log, 2, timestamp=1000 + 10 * i)  # records at 1000+10i and 1001+10i
    assert log.segment_count > 2
    assert log.offset_for_timestamp(0) == (0, 1000)
    assert log.offset_for_timestamp(1001) == (1, 1001)
    assert log.offset_for_timestamp(1002) == (2, 1010)
    assert log.offset_for_timestamp(1105) == (22, 1110)
    assert log.offset_for_timestamp(1191) == (39, 1191)
    assert log.offset_for_timestamp(1192) is None
    assert log.max_timestamp() == (39, 1191)
    log.close()
    log = open_log(LogConfig(segment_bytes=400, index_interval_bytes=50))
    assert log.offset_for_timestamp(1105) == (22, 1110)


def test_max_timestamp_out_of_order_records(open_log: Opener) -> None:
    log = open_log()
    assert log.max_timestamp() == (-1, -1)
    append(log, 1, timestamp=500)
    append(log, 1, timestamp=900)
    append(log, 1, timestamp=700)
    assert log.max_timestamp() == (1, 900)


def test_truncate_to(open_log: Opener) -> None:
    log = open_log(LogConfig(segment_bytes=300))
    for _ in range(10):
        append(log, 2, size=40)
    log.truncate_to(11)  # inside batch 10..11: the whole batch goes
    assert log.log_end_offset == 10
    assert log.high_watermark == 10
    assert offsets_of(log.read(0, 1 << 20))[-1] == (8, 9)
    assert append(log, 1) == (10, 10)
    log.truncate_to(0)
    assert (log.log_start_offset, log.log_end_offset) == (0, 0)
    assert append(log, 1) == (0, 0)


def test_headers_positions_are_file_positions(open_log: Opener) -> None:
    log = open_log()
    append(log, 1)
    append(log, 1)
    positions = [h.position for h in iter_batch_headers(log.read(0, 1 << 20))]
    assert positions[0] == 0 and positions[1] > 0


def test_stale_leader_epoch_checkpoint_is_repaired_from_the_last_segment(open_log: Opener, tmp_path) -> None:
    # The checkpoint is written without fsync: after a machine crash it may miss the newest epochs.
    log = open_log()
    append(log, 3, epoch=0)
    append(log, 2, epoch=4)
    assert log.end_offset_for_leader_epoch(0) == (0, 3)
    log.close()
    (tmp_path / "topic-0" / "leader-epoch-checkpoint").write_text("0\n1\n0 0\n")  # epoch 4 lost
    reopened = open_log()
    assert reopened.end_offset_for_leader_epoch(0) == (0, 3)
    assert reopened.end_offset_for_leader_epoch(4) == (4, 5)
