"""Storage errors are contained: a failed append is undone whole, the partition goes offline, and it comes
back from its files. Disk-full failures are injected at each write an append makes."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import make_batch

from umbra.errors import ErrorCode, KafkaStorageError
from umbra.records.batch import iter_batch_headers
from umbra.storage import index as index_module
from umbra.storage.config import LogConfig
from umbra.storage.log import Log
from umbra.storage.segment import Segment

# An index entry for every batch, so that every append writes both the data and the index file.
EVERY_BATCH_INDEXED = LogConfig(index_interval_bytes=0)


def disk_full(*_: Any, **__: Any) -> Any:
    raise OSError(errno.ENOSPC, "No space left on device")


def base_offsets(log: Log) -> list[int]:
    """The base offset of every batch in the log's segment files, read from the files themselves."""
    offsets = []
    for path in sorted(log.directory.glob("*.log")):
        offsets += [header.base_offset for header in iter_batch_headers(path.read_bytes())]
    return offsets


def fill(log: Log, count: int) -> None:
    for i in range(count):
        log.append_as_leader(make_batch(1, timestamp=1_000 + i), leader_epoch=0, now_ms=1_000 + i)


def assert_offline_then_recovers(log: Log, failed_append: Callable[[], Any], expected_end: int,
                                 free_space: Callable[[], None]) -> None:
    with pytest.raises(KafkaStorageError) as raised:
        failed_append()
    assert raised.value.code is ErrorCode.KAFKA_STORAGE_ERROR
    assert log.offline_reason is not None and "No space left" in log.offline_reason
    # Offline: every read and write is refused with KAFKA_STORAGE_ERROR, nothing half-written is visible.
    for operation in (lambda: log.read(0, 1 << 20), lambda: log.append_as_leader(make_batch(), leader_epoch=0,
                                                                                   now_ms=5_000)):
        with pytest.raises(KafkaStorageError):
            operation()
    assert log.log_end_offset == expected_end
    assert base_offsets(log) == list(range(expected_end))
    free_space()
    log.bring_online()
    assert log.offline_reason is None and log.log_end_offset == expected_end
    # The client's retry lands at the next offset, once: no [0, 1, 1].
    assert log.append_as_leader(make_batch(), leader_epoch=0, now_ms=6_000).base_offset == expected_end
    assert base_offsets(log) == list(range(expected_end + 1))
    assert len(log.read(0, 1 << 20)) > 0


def test_index_write_fails_after_the_data_write(open_log: Callable[..., Log], monkeypatch: pytest.MonkeyPatch) -> None:
    log = open_log(EVERY_BATCH_INDEXED)
    fill(log, 3)
    monkeypatch.setattr(index_module.OffsetIndex, "_write", disk_full)
    assert_offline_then_recovers(log, lambda: log.append_as_leader(make_batch(), leader_epoch=0, now_ms=2_000), 3,
                                 monkeypatch.undo)


def test_data_write_cut_short(open_log: Callable[..., Log], monkeypatch: pytest.MonkeyPatch) -> None:
    log = open_log(EVERY_BATCH_INDEXED)
    fill(log, 2)
    real_write = os.write

    def half_then_full(fd: int, data: Any) -> int:
        if len(data) > 40:  # a batch, not an index entry
            real_write(fd, bytes(data)[: len(data) // 2])
            disk_full()
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", half_then_full)
    assert_offline_then_recovers(log, lambda: log.append_as_leader(make_batch(), leader_epoch=0, now_ms=2_000), 2,
                                 monkeypatch.undo)


def test_new_segment_cannot_be_created(open_log: Callable[..., Log], monkeypatch: pytest.MonkeyPatch) -> None:
    log = open_log(LogConfig(segment_bytes=200, index_interval_bytes=0))
    fill(log, 2)
    segments = log.segment_count
    real_init = Segment.__init__

    def init_then_full(self: Segment, directory: Path, base_offset: int, **kwargs: Any) -> None:
        real_init(self, directory, base_offset, **kwargs)
        if base_offset >= 2:  # the segment the next append rolls to: created, then its index write fails
            disk_full()

    monkeypatch.setattr(Segment, "__init__", init_then_full)
    assert_offline_then_recovers(log, lambda: log.append_as_leader(make_batch(size=150), leader_epoch=0,
                                                                   now_ms=2_000), 2, monkeypatch.undo)
    assert log.segment_count >= segments


def test_leader_epoch_checkpoint_cannot_be_written(open_log: Callable[..., Log],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    log = open_log()
    fill(log, 2)
    monkeypatch.setattr(type(log.epoch_cache), "persist", disk_full)
    assert_offline_then_recovers(log, lambda: log.append_as_leader(make_batch(), leader_epoch=3, now_ms=2_000), 2,
                                 monkeypatch.undo)
    assert log.epoch_cache.latest_epoch == 0  # the new epoch came back only with an append that stayed


def test_replicated_append_is_undone_too(open_log: Callable[..., Log], monkeypatch: pytest.MonkeyPatch) -> None:
    log = open_log(EVERY_BATCH_INDEXED)
    log.append_at_offsets(make_batch(2, base_offset=0), expected_start_offset=0, leader_epoch=1)
    monkeypatch.setattr(index_module.OffsetIndex, "_write", disk_full)
    with pytest.raises(KafkaStorageError):
        log.append_at_offsets(make_batch(3, base_offset=2), expected_start_offset=2, leader_epoch=1)
    assert (log.log_end_offset, base_offsets(log)) == (2, [0])
    monkeypatch.undo()
    log.bring_online()
    log.append_at_offsets(make_batch(3, base_offset=2), expected_start_offset=2, leader_epoch=1)
    assert base_offsets(log) == [0, 2]


def test_failed_fsync_takes_the_partition_offline(open_log: Callable[..., Log], monkeypatch: pytest.MonkeyPatch) -> None:
    log = open_log()
    fill(log, 2)

    def io_error(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", io_error)
    with pytest.raises(KafkaStorageError):
        log.flush()
    assert log.offline_reason is not None and "fsync failed" in log.offline_reason
    monkeypatch.undo()
    log.bring_online()
    log.flush()
    assert log.log_end_offset == 2 and log.recovery_point == 2


def test_recovery_that_still_fails_keeps_the_partition_offline(open_log: Callable[..., Log],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    log = open_log(EVERY_BATCH_INDEXED)
    fill(log, 2)
    monkeypatch.setattr(index_module.OffsetIndex, "_write", disk_full)
    with pytest.raises(KafkaStorageError):
        log.append_as_leader(make_batch(), leader_epoch=0, now_ms=2_000)
    monkeypatch.setattr(Log, "_load", disk_full)
    with pytest.raises(KafkaStorageError, match="still offline"):
        log.bring_online()
    assert log.offline_reason is not None
