"""The recovery point: start-up CRC-checks only what could be torn, and damage below it never deletes data."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import make_batch

from umbra.errors import KafkaStorageError
from umbra.records.batch import validate_record_set
from umbra.storage.checkpoint import read_offset, write_offset
from umbra.storage.config import LogConfig
from umbra.storage.log import RECOVERY_POINT_FILE, Log

Opener = Callable[..., Log]
SMALL_SEGMENTS = LogConfig(segment_bytes=400)


def fill(log: Log, batches: int) -> None:
    for _ in range(batches):
        log.append_as_leader(make_batch(2, size=40), leader_epoch=0, now_ms=10_000)
    log.high_watermark = log.log_end_offset


def segment_files(directory: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in sorted(directory.glob("*.log"))}


def damage_header(path: Path) -> None:
    """Overwrite the magic byte of the segment's second batch (a bad header, not a torn tail)."""
    data = bytearray(path.read_bytes())
    first_length = int.from_bytes(data[8:12], "big")
    second = 12 + first_length
    data[second + 16] = 7  # magic
    path.write_bytes(bytes(data))


def test_clean_close_checkpoints_the_log_end(open_log: Opener, tmp_path: Path) -> None:
    log = open_log(SMALL_SEGMENTS)
    fill(log, 12)
    end = log.log_end_offset
    log.close()
    assert read_offset(tmp_path / "topic-0" / RECOVERY_POINT_FILE) == end


def test_a_roll_flushes_and_checkpoints_what_it_sealed(open_log: Opener, tmp_path: Path) -> None:
    log = open_log(SMALL_SEGMENTS)
    fill(log, 1)
    assert not log.maybe_flush(10_000)  # no flush policy, nothing rolled: nothing to do
    fill(log, 6)
    assert log.segment_count > 1
    assert log.maybe_flush(10_000)
    assert log.recovery_point == log.log_end_offset
    assert read_offset(tmp_path / "topic-0" / RECOVERY_POINT_FILE) == log.log_end_offset


@pytest.mark.parametrize("checkpointed", [True, False])
def test_a_damaged_old_segment_takes_the_partition_offline_and_deletes_nothing(
        open_log: Opener, tmp_path: Path, checkpointed: bool, caplog: pytest.LogCaptureFixture) -> None:
    directory = tmp_path / "topic-0"
    log = open_log(SMALL_SEGMENTS)
    fill(log, 12)
    data, end = log.read(0, 1 << 20), log.log_end_offset
    log.close()
    if not checkpointed:  # a data dir from before checkpoints: only the active segment counts as tearable
        (directory / RECOVERY_POINT_FILE).unlink()
    before = segment_files(directory)
    assert len(before) >= 3
    old = directory / sorted(before)[1]
    pristine = old.read_bytes()
    damage_header(old)

    with caplog.at_level(logging.ERROR):
        log = open_log(SMALL_SEGMENTS)
    assert log.offline_reason is not None and "damaged" in log.offline_reason
    assert "no data was deleted" in caplog.text and "topic-0" in caplog.text
    assert segment_files(directory) == before  # not one byte cut, not one segment deleted
    with pytest.raises(KafkaStorageError):
        log.read(0, 1 << 20)
    with pytest.raises(KafkaStorageError):
        fill(log, 1)
    with pytest.raises(KafkaStorageError, match="still offline"):
        log.bring_online()  # nothing changed yet
    assert segment_files(directory) == before

    old.write_bytes(pristine)  # the operator restores the file
    log.bring_online()
    assert log.offline_reason is None
    assert log.log_end_offset == end
    log.high_watermark = end
    assert log.read(0, 1 << 20) == data


def test_a_torn_segment_past_the_recovery_point_is_cut_with_the_segments_after_it(
        open_log: Opener, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Segments written after the last fsync may be torn by a machine crash; a log has no holes, so what
    follows a torn one goes too (what Kafka does)."""
    directory = tmp_path / "topic-0"
    log = open_log(SMALL_SEGMENTS)
    fill(log, 12)
    log.close()
    names = sorted(segment_files(directory))
    first_unflushed = int(names[1][:20])
    write_offset(directory / RECOVERY_POINT_FILE, first_unflushed)  # the crash came before later flushes
    damage_header(directory / names[1])
    with caplog.at_level(logging.WARNING):
        log = open_log(SMALL_SEGMENTS)
    assert log.offline_reason is None
    assert "recovery truncated" in caplog.text
    assert sorted(segment_files(directory)) == names[:2]
    log.high_watermark = log.log_end_offset
    batches = validate_record_set(log.read(0, 1 << 20))
    assert batches[-1].last_offset + 1 == log.log_end_offset
    assert first_unflushed < log.log_end_offset < 24


def test_a_truncation_lowers_the_checkpointed_recovery_point(open_log: Opener, tmp_path: Path) -> None:
    log = open_log(SMALL_SEGMENTS)
    fill(log, 12)
    log.flush()
    assert log.checkpoint_recovery_point()
    assert read_offset(tmp_path / "topic-0" / RECOVERY_POINT_FILE) == 24
    log.truncate_to(5)
    assert read_offset(tmp_path / "topic-0" / RECOVERY_POINT_FILE) == log.log_end_offset <= 5
