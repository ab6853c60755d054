"""Crash recovery, prefix truncation, retention, flushing and the log manager."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import make_batch

from umbra.errors import OffsetOutOfRange
from umbra.records.batch import validate_record_set
from umbra.storage.config import LogConfig
from umbra.storage.log import Log
from umbra.storage.manager import LogManager, parse_partition_dir

Opener = Callable[..., Log]


def fill(log: Log, batches: int, count: int = 2, **kwargs: object) -> None:
    for _ in range(batches):
        log.append_as_leader(make_batch(count, **kwargs), leader_epoch=0, now_ms=10_000)
    log.high_watermark = log.log_end_offset


def active_log_file(directory: Path) -> Path:
    return sorted(directory.glob("*.log"))[-1]


@pytest.mark.parametrize("damage", ["half_batch", "garbage", "bad_crc"])
def test_recovery_truncates_torn_tail(open_log: Opener, tmp_path: Path, damage: str,
                                      caplog: pytest.LogCaptureFixture) -> None:
    log = open_log()
    fill(log, 5)
    good = log.read(0, 1 << 20)
    log.close()
    path = active_log_file(tmp_path / "topic-0")
    with open(path, "ab") as f:
        if damage == "half_batch":
            f.write(make_batch(3, base_offset=10)[:40])
        elif damage == "garbage":
            f.write(b"\xde\xad" * 100)
        else:
            corrupt = bytearray(make_batch(3, base_offset=10))
            corrupt[-2] ^= 0x55
            f.write(corrupt)
    with caplog.at_level(logging.WARNING):
        log = open_log()
    assert "topic-0" in caplog.text and "truncated" in caplog.text
    assert log.log_end_offset == 10
    assert os.path.getsize(path) == len(good)
    log.high_watermark = 10
    assert log.read(0, 1 << 20) == good
    fill(log, 1)
    assert log.log_end_offset == 12
    assert [h.base_offset for h in validate_record_set(log.read(0, 1 << 20))][-1] == 10


def test_recovery_rebuilds_bad_indexes(open_log: Opener, tmp_path: Path) -> None:
    config = LogConfig(segment_bytes=500, index_interval_bytes=50)
    log = open_log(config)
    fill(log, 20)
    data = log.read(0, 1 << 20)
    log.close()
    for index in sorted((tmp_path / "topic-0").glob("*.index"))[:2]:
        index.write_bytes(b"\x00\x00\x00\x09\x00\x00\x00\x07garbage")
    log = open_log(config)
    assert log.read(0, 1 << 20) == data
    for target in range(0, 40, 3):
        first = validate_record_set(log.read(target, 1))[0]
        assert first.base_offset <= target <= first.last_offset


def test_advance_log_start_offset_persists(open_log: Opener, tmp_path: Path) -> None:
    config = LogConfig(segment_bytes=300)
    log = open_log(config)
    fill(log, 10, size=40)
    segments = log.segment_count
    with pytest.raises(OffsetOutOfRange):
        log.advance_log_start_offset(log.high_watermark + 1)
    log.advance_log_start_offset(9)
    assert log.log_start_offset == 9
    assert log.segment_count < segments
    assert validate_record_set(log.read(9, 1))[0].base_offset == 8
    with pytest.raises(OffsetOutOfRange):
        log.read(8, 100)
    log.close()
    log = open_log(config)
    assert log.log_start_offset == 9
    log.advance_log_start_offset(log.log_end_offset)
    assert log.log_start_offset == log.log_end_offset == 20
    assert log.size_in_bytes == 0
    fill(log, 1)
    assert log.log_end_offset == 22


def test_retention_by_time(open_log: Opener) -> None:
    log = open_log(LogConfig(segment_bytes=300, retention_ms=1000))
    fill(log, 6, size=40, timestamp=1_000)
    fill(log, 6, size=40, timestamp=5_000)
    before = log.size_in_bytes
    assert log.enforce_retention(now_ms=5_500) > 0
    assert log.log_start_offset > 0
    assert log.size_in_bytes < before
    assert log.log_end_offset == 24
    assert log.offset_for_timestamp(0) == (log.log_start_offset, 5000 + (log.log_start_offset - 12))
    assert log.enforce_retention(now_ms=5_500) == 0


def test_retention_by_bytes_and_infinite(open_log: Opener) -> None:
    log = open_log(LogConfig(segment_bytes=300, retention_ms=-1, retention_bytes=600))
    fill(log, 20, size=40)
    deleted = log.enforce_retention(now_ms=10**13)
    assert deleted > 0
    assert log.size_in_bytes - log.segment_count * 0 <= 600 + 300
    assert log.log_start_offset > 0
    compact = open_log(LogConfig(segment_bytes=300, retention_ms=0, cleanup_policy="compact"), name="other-0")
    fill(compact, 10, size=40)
    assert compact.enforce_retention(now_ms=10**13) == 0


def test_retention_never_passes_high_watermark(open_log: Opener) -> None:
    log = open_log(LogConfig(segment_bytes=300, retention_ms=0))
    fill(log, 10, size=40)
    log.high_watermark = 0
    assert log.enforce_retention(now_ms=10**13) == 0


def test_flush_policies(open_log: Opener) -> None:
    log = open_log(LogConfig(flush_messages=4))
    fill(log, 1)
    assert not log.maybe_flush(0)
    fill(log, 1)
    assert log.maybe_flush(0)
    assert log.recovery_point == log.log_end_offset
    timed = open_log(LogConfig(flush_ms=100), name="timed-0")
    fill(timed, 1)
    timed.maybe_flush(1_000)
    fill(timed, 1)
    assert not timed.maybe_flush(1_050)
    assert timed.maybe_flush(1_200)
    never = open_log(name="never-0")
    fill(never, 50)
    assert not never.maybe_flush(10**13)


def test_update_config_applies_to_next_roll(open_log: Opener) -> None:
    log = open_log()
    fill(log, 5, size=40)
    assert log.segment_count == 1
    log.update_config(LogConfig(segment_bytes=200))
    fill(log, 5, size=40)
    assert log.segment_count > 1


def test_parse_partition_dir() -> None:
    assert parse_partition_dir("my-topic-12") == ("my-topic", 12)
    assert parse_partition_dir("__consumer_offsets-0") == ("__consumer_offsets", 0)
    assert parse_partition_dir("nodash") is None
    assert parse_partition_dir("topic-x") is None


def test_log_manager(tmp_path: Path) -> None:
    manager = LogManager(tmp_path / "data")
    log = manager.create("a-b", 3, LogConfig())
    assert manager.create("a-b", 3, LogConfig()) is log
    fill(log, 2)
    manager.create("c", 0, LogConfig())
    manager.close_all()
    (tmp_path / "data" / "junk-1.deleted").mkdir()
    manager = LogManager(tmp_path / "data")
    opened = manager.open_all(lambda topic: LogConfig())
    assert sorted(log.name for log in opened) == ["a-b-3", "c-0"]
    reopened = manager.get("a-b", 3)
    assert reopened is not None and reopened.log_end_offset == 4
    assert not (tmp_path / "data" / "junk-1.deleted").exists()
    assert manager.delete_partition("a-b", 3)
    assert manager.get("a-b", 3) is None
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["c-0"]
    manager.flush_all()
    assert manager.enforce_retention_all(0) == 0
    manager.close_all()
