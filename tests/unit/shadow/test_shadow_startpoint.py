"""The start-point check by batch CRC, for sources without leader epochs or topic ids (pure: logs and bytes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from umbra.client.fetch_response import FetchedPartition
from umbra.errors import ErrorCode
from umbra.records.batch import HEADER_SIZE, parse_header
from umbra.records.records import build_batch
from umbra.shadow.startpoint import StartPoint, compare, last_batch_header
from umbra.storage.config import LogConfig
from umbra.storage.log import Log


def batch(base_offset: int, values: list[bytes]) -> bytes:
    return build_batch([(b"k", v, [], 1_000 + i) for i, v in enumerate(values)], base_offset=base_offset)


def answer(records: bytes, *, error: ErrorCode = ErrorCode.NONE, high_watermark: int = 100,
           log_start_offset: int = 0) -> FetchedPartition:
    return FetchedPartition("t", None, 0, int(error), high_watermark, high_watermark, log_start_offset,
                            memoryview(records))


@pytest.fixture
def shadow_log(tmp_path: Path) -> Log:
    log = Log.open(tmp_path / "t-0", "t", 0, LogConfig())
    log.append_at_offsets(batch(0, [b"a", b"b"]) + batch(2, [b"c", b"d", b"e"]), expected_start_offset=0,
                          leader_epoch=7)
    return log


def test_last_batch_header_of_a_log(shadow_log: Log, tmp_path: Path) -> None:
    header = last_batch_header(shadow_log)
    assert header is not None and (header.base_offset, header.last_offset) == (2, 4)
    assert header.partition_leader_epoch == 7  # stamped by the shadow: outside the CRC
    empty = Log.open(tmp_path / "e-0", "e", 0, LogConfig())
    assert last_batch_header(empty) is None
    empty.restart_at(50)  # a shadow that started at the source's end: no batch yet
    assert last_batch_header(empty) is None


def test_the_same_batch_matches_whatever_its_leader_epoch(shadow_log: Log) -> None:
    ours = last_batch_header(shadow_log)
    assert ours is not None
    verdict = compare(ours, answer(batch(2, [b"c", b"d", b"e"])))
    assert verdict is not None and verdict.outcome is StartPoint.MATCH


def test_only_the_header_is_needed(shadow_log: Log) -> None:
    ours = last_batch_header(shadow_log)
    assert ours is not None
    cut = batch(2, [b"c", b"d", b"e"])[:HEADER_SIZE]  # a source cutting at partition_max_bytes
    verdict = compare(ours, answer(cut))
    assert verdict is not None and verdict.outcome is StartPoint.MATCH
    assert compare(ours, answer(cut[:HEADER_SIZE - 1])) is None  # ask again for a whole batch


@pytest.mark.parametrize("theirs", [
    batch(2, [b"c", b"d", b"X"]),  # other records at the same offsets
    batch(2, [b"c", b"d"]),  # fewer
    batch(1, [b"z", b"c", b"d", b"e"]),  # batched differently
])
def test_other_data_at_the_same_offsets_diverges(shadow_log: Log, theirs: bytes) -> None:
    ours = last_batch_header(shadow_log)
    assert ours is not None
    verdict = compare(ours, answer(theirs))
    assert verdict is not None and verdict.outcome is StartPoint.DIVERGED
    assert f"CRC {ours.crc:#010x}" in verdict.detail and f"CRC {parse_header(theirs).crc:#010x}" in verdict.detail


def test_a_source_that_ends_before_the_shadow_diverges(shadow_log: Log) -> None:
    ours = last_batch_header(shadow_log)
    assert ours is not None
    ended = compare(ours, answer(b"", high_watermark=2))
    assert ended is not None and ended.outcome is StartPoint.DIVERGED and "ends at 2" in ended.detail
    out = compare(ours, answer(b"", error=ErrorCode.OFFSET_OUT_OF_RANGE, high_watermark=1))
    assert out is not None and out.outcome is StartPoint.DIVERGED


def test_a_batch_removed_by_source_retention_cannot_contradict(shadow_log: Log) -> None:
    ours = last_batch_header(shadow_log)
    assert ours is not None
    verdict = compare(ours, answer(b"", error=ErrorCode.OFFSET_OUT_OF_RANGE, log_start_offset=10))
    assert verdict is not None and verdict.outcome is StartPoint.MATCH


def test_other_errors_and_no_answer_are_unknown(shadow_log: Log) -> None:
    ours = last_batch_header(shadow_log)
    assert ours is not None
    for fetched in (answer(b"", error=ErrorCode.NOT_LEADER_OR_FOLLOWER), None):
        verdict = compare(ours, fetched)
        assert verdict is not None and verdict.outcome is StartPoint.UNKNOWN

