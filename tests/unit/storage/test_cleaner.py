"""The log cleaner on real logs in a tmp dir: deduplication, offsets, tombstones, compression, producer state,
the active segment, and crash safety of the segment swap."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from umbra.errors import InvalidRecord, OutOfOrderSequence
from umbra.records import compression as codecs
from umbra.records.batch import BatchHeader, iter_batch_headers, validate_record_set
from umbra.records.records import Record, build_batch, decode_batch
from umbra.storage.cleaner import LogCleaner, read_checkpoint
from umbra.storage.compaction import DELETE_HORIZON_MASK
from umbra.storage.config import LogConfig
from umbra.storage.log import Log
from umbra.storage.recovery import CLEANED_SUFFIX, swap_marker
from umbra.storage.region import FileRegion, close_regions
from umbra.storage.segment import Segment

Opener = Callable[..., Log]
NOW = 10**12
DAY = 86_400_000
# Every batch rolls a new segment (segment.bytes is below any batch's size); the cleaner merges by segment.bytes,
# so tests raise it before cleaning when they want merging.
ONE_BATCH_PER_SEGMENT = LogConfig(cleanup_policy="compact", segment_bytes=14, min_cleanable_dirty_ratio=0.0)

Item = tuple[bytes | None, bytes | None]


def batch(*items: Item, timestamp: int = 1_000, **kwargs: object) -> bytes:
    return build_batch([(key, value, [], timestamp + i) for i, (key, value) in enumerate(items)],
                       **kwargs)  # type: ignore[arg-type]


def append(log: Log, *items: Item, **kwargs: object) -> None:
    log.append_as_leader(batch(*items, **kwargs), leader_epoch=0, now_ms=NOW)
    log.high_watermark = log.log_end_offset


def stored(log: Log) -> list[tuple[BatchHeader, list[Record]]]:
    data = bytes(log.read(log.log_start_offset, 1 << 30))
    return [decode_batch(data, header.position) for header in iter_batch_headers(data)]


def records(log: Log) -> list[tuple[int, bytes | None, bytes | None]]:
    return [(r.offset, r.key, r.value) for _, batch_records in stored(log) for r in batch_records]


def merge_on_clean(log: Log) -> None:
    log.update_config(replace(log.config, segment_bytes=1 << 20))


def test_keeps_the_latest_value_per_key_at_unchanged_offsets(open_log: Opener, tmp_path: Path) -> None:
    log = open_log(ONE_BATCH_PER_SEGMENT)
    append(log, (b"a", b"a1"), (b"b", b"b1"))  # offsets 0, 1
    append(log, (b"a", b"a2"))  # 2
    append(log, (b"c", b"c1"), (b"b", b"b2"))  # 3, 4
    append(log, (b"a", b"a3"))  # 5
    append(log, (b"a", b"a4"))  # 6: the active segment
    assert log.segment_count == 5
    merge_on_clean(log)

    result = LogCleaner().clean_log(log, NOW)

    assert result is not None and result.records_removed == 3 and result.segments_read == 4
    assert records(log) == [(3, b"c", b"c1"), (4, b"b", b"b2"), (5, b"a", b"a3"), (6, b"a", b"a4")]
    assert log.segment_count == 2  # four cleaned segments merged into one, plus the active one
    assert (log.log_start_offset, log.log_end_offset) == (0, 7)
    assert read_checkpoint(log) == 6
    # A read at a removed offset starts at the next batch that is left.
    assert decode_batch(bytes(log.read(1, 1 << 20)))[1][0].offset == 3
    # The cleaned batch keeps its base offset and last offset delta, and its CRC is right.
    header = stored(log)[0][0]
    assert (header.base_offset, header.last_offset_delta, header.record_count) == (3, 1, 2)
    validate_record_set(bytes(log.read(0, 1 << 20)))

    log.close()
    reopened = Log.open(tmp_path / "topic-0", "topic", 0, log.config)
    try:
        assert records(reopened) == [(3, b"c", b"c1"), (4, b"b", b"b2"), (5, b"a", b"a3"), (6, b"a", b"a4")]
        assert reopened.log_end_offset == 7
        assert LogCleaner().clean_log(reopened, NOW) is None  # nothing dirty since the last pass
    finally:
        reopened.close()


def test_the_active_segment_is_never_cleaned(open_log: Opener) -> None:
    log = open_log(LogConfig(cleanup_policy="compact", min_cleanable_dirty_ratio=0.0))
    for i in range(5):
        append(log, (b"k", b"v%d" % i))
    assert log.segment_count == 1
    assert LogCleaner().clean_log(log, NOW, force=True) is None
    assert [value for _, _, value in records(log)] == [b"v0", b"v1", b"v2", b"v3", b"v4"]


def test_tombstones_are_kept_for_delete_retention_ms_then_removed(open_log: Opener) -> None:
    log = open_log(replace(ONE_BATCH_PER_SEGMENT, delete_retention_ms=DAY))
    append(log, (b"a", b"a1"))  # 0
    append(log, (b"a", None), timestamp=5_000)  # 1: tombstone
    append(log, (b"b", b"b1"))  # 2
    append(log, (b"z", b"z1"))  # 3: active
    cleaner = LogCleaner()

    assert cleaner.clean_log(log, NOW) is not None
    assert records(log) == [(1, b"a", None), (2, b"b", b"b1"), (3, b"z", b"z1")]
    header, (tombstone,) = stored(log)[0]
    assert header.attributes & DELETE_HORIZON_MASK and header.base_timestamp == NOW + DAY
    assert tombstone.timestamp == 5_000  # record timestamps survive the stamped delete horizon

    assert cleaner.clean_log(log, NOW + DAY - 1, force=True) is not None
    assert records(log)[0] == (1, b"a", None)
    assert cleaner.clean_log(log, NOW + DAY, force=True) is not None
    assert records(log) == [(2, b"b", b"b1"), (3, b"z", b"z1")]


@pytest.mark.parametrize("codec", [codecs.GZIP, codecs.SNAPPY, codecs.LZ4, codecs.ZSTD])
def test_compressed_batches_are_recompressed_with_their_codec(open_log: Opener, codec: int) -> None:
    log = open_log(ONE_BATCH_PER_SEGMENT)
    append(log, (b"a", b"a1" * 50), (b"b", b"b1" * 50), (b"a", b"a2" * 50), (b"c", b"c1"), compression=codec)
    append(log, (b"c", b"c2"))  # a newer c in the next segment
    append(log, (b"z", b"z"))  # active

    assert LogCleaner().clean_log(log, NOW) is not None

    (header, kept), *_ = stored(log)
    assert header.compression == codec
    assert (header.base_offset, header.last_offset_delta, header.record_count) == (0, 3, 2)
    assert [(r.offset, r.key, r.value) for r in kept] == [(1, b"b", b"b1" * 50), (2, b"a", b"a2" * 50)]
    assert [r.timestamp for r in kept] == [1_001, 1_002]
    assert validate_record_set(bytes(log.read(0, 1 << 20)))


def test_idempotent_producer_state_survives_cleaning_and_restart(open_log: Opener, tmp_path: Path) -> None:
    log = open_log(ONE_BATCH_PER_SEGMENT)
    producer = {"producer_id": 7, "producer_epoch": 0}
    append(log, (b"k", b"1"), base_sequence=0, **producer)  # 0
    append(log, (b"k", b"2"), base_sequence=1, **producer)  # 1: the producer's last batch
    append(log, (b"k", b"3"))  # 2: makes offset 1 redundant
    append(log, (b"z", b"z"))  # 3: active

    assert LogCleaner().clean_log(log, NOW) is not None

    batches = stored(log)
    assert [h.base_offset for h, _ in batches] == [1, 2, 3]
    empty = batches[0][0]  # kept without records: it carries the producer's last sequence
    assert (empty.record_count, empty.last_offset, empty.producer_id, empty.base_sequence) == (0, 1, 7, 1)
    append(log, (b"k", b"4"), base_sequence=2, **producer)

    log.close()
    reopened = Log.open(tmp_path / "topic-0", "topic", 0, ONE_BATCH_PER_SEGMENT)
    try:
        with pytest.raises(OutOfOrderSequence):
            append(reopened, (b"k", b"x"), base_sequence=9, **producer)
        append(reopened, (b"k", b"5"), base_sequence=3, **producer)
        assert LogCleaner().clean_log(reopened, NOW) is not None
        append(reopened, (b"k", b"6"), base_sequence=4, **producer)
    finally:
        reopened.close()


def test_keyless_records_are_refused_by_compacted_logs(open_log: Opener) -> None:
    compacted = open_log(LogConfig(cleanup_policy="compact,delete"))
    with pytest.raises(InvalidRecord, match="without key"):
        append(compacted, (b"k", b"v"), (None, b"v"))
    assert compacted.log_end_offset == 0
    append(open_log(LogConfig(), name="plain-0"), (None, b"v"))


def test_dirty_ratio_and_compaction_lag_hold_the_cleaner_back(open_log: Opener) -> None:
    log = open_log(replace(ONE_BATCH_PER_SEGMENT, min_cleanable_dirty_ratio=0.5))
    for i in range(6):
        append(log, (b"k%d" % i, b"v"))
    cleaner = LogCleaner()
    assert cleaner.clean_log(log, NOW) is not None
    append(log, (b"k", b"v"))  # one more dirty segment among five clean ones
    assert cleaner.clean_log(log, NOW) is None
    assert cleaner.clean_log(log, NOW, force=True) is not None

    lagging = open_log(replace(ONE_BATCH_PER_SEGMENT, min_compaction_lag_ms=60_000), name="lag-0")
    for _ in range(3):
        append(lagging, (b"k", b"v"), timestamp=NOW - 1_000)
    assert cleaner.clean_log(lagging, NOW) is None
    assert cleaner.clean_log(lagging, NOW + 60_000) is not None
    assert len(records(lagging)) == 2


def test_max_compaction_lag_cleans_below_the_dirty_ratio(open_log: Opener) -> None:
    """max.compaction.lag.ms: once the earliest dirty record is that old, the log is cleaned although the dirty
    ratio says not yet; before that it is not."""
    config = replace(ONE_BATCH_PER_SEGMENT, min_cleanable_dirty_ratio=0.9, max_compaction_lag_ms=60_000)
    log = open_log(config)
    for i in range(6):
        append(log, (b"k%d" % i, b"v"), timestamp=NOW)
    cleaner = LogCleaner()
    assert cleaner.clean_log(log, NOW, force=True) is not None  # cleans offsets 0-4; 5 was the active segment
    append(log, (b"k0", b"v2"), timestamp=NOW + 1_000)  # a small dirty part (5, 6): ratio far below 0.9
    append(log, (b"k1", b"v2"), timestamp=NOW + 2_000)  # (the active segment)
    assert cleaner.clean_log(log, NOW + 59_000) is None  # the earliest dirty record (offset 5) is 59 s old
    cleaned = cleaner.clean_log(log, NOW + 60_000)
    assert cleaned is not None and cleaned.records_removed == 1  # k0's first value
    assert [key for _, key, _ in records(log)].count(b"k0") == 1


def test_max_compaction_lag_rolls_the_active_segment(open_log: Opener) -> None:
    """Records in the active segment cannot be cleaned: a compacted log rolls it at max.compaction.lag.ms."""
    config = LogConfig(cleanup_policy="compact", max_compaction_lag_ms=5_000, segment_ms=DAY)
    log = open_log(config)
    log.append_as_leader(batch((b"a", b"1")), leader_epoch=0, now_ms=NOW)
    log.append_as_leader(batch((b"a", b"2")), leader_epoch=0, now_ms=NOW + 4_000)
    assert log.segment_count == 1
    log.append_as_leader(batch((b"a", b"3")), leader_epoch=0, now_ms=NOW + 6_000)
    assert log.segment_count == 2
    deleting = open_log(replace(config, cleanup_policy="delete"), name="delete-0")  # segment.ms alone there
    deleting.append_as_leader(batch((b"a", b"1")), leader_epoch=0, now_ms=NOW)
    deleting.append_as_leader(batch((b"a", b"2")), leader_epoch=0, now_ms=NOW + 6_000)
    assert deleting.segment_count == 1


def test_a_region_of_a_replaced_segment_stays_readable(open_log: Opener) -> None:
    log = open_log(ONE_BATCH_PER_SEGMENT)
    append(log, (b"a", b"x" * 300_000))
    append(log, (b"a", b"small"))
    append(log, (b"z", b"z"))
    region = log.read(0, 400_000, max_offset=1, regions_ok=True)
    assert isinstance(region, FileRegion)
    try:
        before = region.read()
        assert LogCleaner().clean_log(log, NOW) is not None
        assert records(log)[0] == (1, b"a", b"small")
        assert region.read() == before
    finally:
        close_regions([region])


def test_a_stopped_cleaner_leaves_the_log_alone(open_log: Opener) -> None:
    log = open_log(ONE_BATCH_PER_SEGMENT)
    for i in range(4):
        append(log, (b"k", b"%d" % i))
    cleaner = LogCleaner()
    cleaner.stop()
    assert cleaner.clean_log(log, NOW) is None
    assert len(records(log)) == 4
    assert not list(log.directory.glob("*" + CLEANED_SUFFIX))


# ---- crash safety of the swap -------------------------------------------------------------------------

def _fill_for_crash(log: Log) -> None:
    for i in range(4):
        append(log, (b"k", b"%d" % i))  # 0..3, the last one active
    merge_on_clean(log)


def test_uncommitted_cleaned_files_are_discarded_on_open(open_log: Opener, tmp_path: Path) -> None:
    log = open_log(ONE_BATCH_PER_SEGMENT)
    _fill_for_crash(log)
    leftover = Segment(log.directory, 0, fresh=True, suffix=CLEANED_SUFFIX)
    leftover.append(batch((b"k", b"bogus")), [], 4096)
    leftover.close()
    log.close()

    reopened = Log.open(tmp_path / "topic-0", "topic", 0, ONE_BATCH_PER_SEGMENT)
    try:
        assert [value for _, _, value in records(reopened)] == [b"0", b"1", b"2", b"3"]
        assert not list(reopened.directory.glob("*" + CLEANED_SUFFIX))
    finally:
        reopened.close()


@pytest.mark.parametrize("crash_in", ["rename_to_live", "delete"])
def test_a_committed_swap_is_finished_on_open(open_log: Opener, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              crash_in: str) -> None:
    log = open_log(ONE_BATCH_PER_SEGMENT)
    _fill_for_crash(log)

    def crash(*_args: object) -> None:
        raise OSError("simulated crash")

    monkeypatch.setattr(Segment, crash_in, crash)
    with pytest.raises(OSError, match="simulated crash"):
        LogCleaner().clean_log(log, NOW)
    monkeypatch.undo()
    assert swap_marker(log.directory, 0).exists()

    reopened = Log.open(tmp_path / "topic-0", "topic", 0, ONE_BATCH_PER_SEGMENT)
    try:
        assert records(reopened) == [(2, b"k", b"2"), (3, b"k", b"3")]
        assert reopened.segment_count == 2 and reopened.log_end_offset == 4
        assert not swap_marker(reopened.directory, 0).exists()
        assert not list(reopened.directory.glob("*" + CLEANED_SUFFIX))
    finally:
        reopened.close()


def test_a_swap_is_abandoned_when_the_log_changed(open_log: Opener) -> None:
    log = open_log(replace(ONE_BATCH_PER_SEGMENT, retention_ms=0, cleanup_policy="compact,delete"))
    for i in range(4):
        append(log, (b"k", b"%d" % i))
    view = log.cleaning_view()
    log.enforce_retention(NOW)  # retention deletes the segments the cleaner is about to replace
    new = Segment(log.directory, 0, fresh=True, suffix=CLEANED_SUFFIX)
    assert not log.replace_segments(list(view.segments[:3]), list(view.sizes[:3]), new, 3)
    new.close()
