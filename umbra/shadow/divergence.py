"""Where a shadow partition and its source part ways, so that the shadow can truncate there and follow on.

A source can lose its last acknowledged batches (an unflushed tail after a machine crash, Kafka's unclean
leader election) and then take new writes at the same offsets. The shadow must not keep the old records
where the source now has new ones.

- With leader epochs, the shadow keeps the *source's* epoch of every batch it holds (the batches themselves
  carry the shadow's own epoch) in ``source-leader-epoch-checkpoint``. It names the epoch of its last batch
  in every Fetch (v12+), and at every start point asks OffsetForLeaderEpoch where that epoch ends on the
  source. The answer gives the truncation point by Kafka's follower rule (:func:`truncation_offset`).
- Without leader epochs, the shadow compares batches by CRC (:mod:`umbra.shadow.startpoint`) and, where its
  last batch differs, searches for the last one the source still has (:func:`find_common_end`).
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from typing import TYPE_CHECKING

from umbra.errors import OffsetOutOfRange
from umbra.records.batch import HEADER_SIZE, BatchHeader, parse_header
from umbra.shadow.startpoint import StartPoint, compare
from umbra.storage.leader_epoch import LeaderEpochCache

if TYPE_CHECKING:
    from umbra.client.cluster import SourceCluster
    from umbra.storage.log import Log

TopicPartition = tuple[str, int]
SOURCE_EPOCHS_FILE = "source-leader-epoch-checkpoint"
# Enough for one whole batch where a source sends whole batches only.
_WHOLE_BATCH_BYTES = 1 << 20


def open_source_epochs(log_: Log) -> LeaderEpochCache:
    """The source's leader epochs of the batches in a shadow partition's log (empty for an older shadow)."""
    return LeaderEpochCache(log_.directory, SOURCE_EPOCHS_FILE)


def epoch_end(entries: list[tuple[int, int]], epoch: int, log_end_offset: int) -> tuple[int, int]:
    """(the largest epoch <= ``epoch`` this log has, the offset where it ends); (-1, -1) if it has none."""
    index = bisect_right([e for e, _ in entries], epoch) - 1
    if index < 0:
        return -1, -1
    end = entries[index + 1][1] if index + 1 < len(entries) else log_end_offset
    return entries[index][0], end


def truncation_offset(source_epoch: int, source_end: int, entries: list[tuple[int, int]], log_end_offset: int
                      ) -> int:
    """Where the shadow truncates after the source said its ``source_epoch`` ends at ``source_end``.

    Kafka's follower rule: if the shadow holds that very epoch, truncate to the smaller of the two ends; if
    it holds only earlier epochs, to the end of the latest of those (the next check goes on from there);
    without epochs at all, to the source's end.
    """
    if source_epoch < 0:
        return min(source_end, log_end_offset)
    our_epoch, our_end = epoch_end(entries, source_epoch, log_end_offset)
    if our_epoch < 0:
        return min(source_end, log_end_offset)
    if our_epoch != source_epoch:
        return min(our_end, log_end_offset)
    return min(source_end, our_end, log_end_offset)


def diverges(source_epoch: int, source_end: int, our_epoch: int, log_end_offset: int) -> bool:
    """Whether an OffsetForLeaderEpoch answer (or a Fetch's diverging epoch) for ``our_epoch`` parts the logs."""
    return source_epoch < our_epoch or source_end < log_end_offset


@dataclass(frozen=True, slots=True)
class CommonEnd:
    """The result of :func:`find_common_end`."""

    offset: int | None  # where the history the shadow shares with the source ends; None: it shares none
    source_high_watermark: int
    detail: str


def _header_at(log_: Log, offset: int) -> BatchHeader | None:
    try:
        data = log_.read(offset, HEADER_SIZE)
    except OffsetOutOfRange:
        return None
    return parse_header(data, 0) if len(data) >= HEADER_SIZE else None


async def _matches(source: SourceCluster, tp: TopicPartition, ours: BatchHeader) -> tuple[bool, int]:
    """(whether the source has ``ours`` at its offsets, the source's high watermark)."""
    fetched = (await source.fetch_at({tp: ours.base_offset}, HEADER_SIZE)).get(tp)
    verdict = compare(ours, fetched)
    if verdict is None:
        fetched = (await source.fetch_at({tp: ours.base_offset}, _WHOLE_BATCH_BYTES)).get(tp)
        verdict = compare(ours, fetched)
    if verdict is None or verdict.outcome is StartPoint.UNKNOWN:
        raise LookupError(verdict.detail if verdict else f"the source sent no batch at offset {ours.base_offset}")
    return verdict.outcome is StartPoint.MATCH, fetched.high_watermark if fetched is not None else -1


async def find_common_end(source: SourceCluster, tp: TopicPartition, log_: Log) -> CommonEnd:
    """Binary search, by batch CRC, for the end of the history a shadow log shares with its source.

    It assumes that once the two differ they never agree again, which holds for a source that lost a tail
    and wrote on: a few dozen one-batch Fetches for any log. Raises LookupError when the source cannot say.
    """
    low, high = log_.log_start_offset, log_.log_end_offset  # the batch at ``low`` is probed first
    first = _header_at(log_, low)
    if first is None:
        return CommonEnd(low, -1, "the shadow holds no batch")
    matched, source_hw = await _matches(source, tp, first)
    if not matched:
        return CommonEnd(None, source_hw, f"the source does not have the shadow's first batch (offsets "
                                          f"{first.base_offset}-{first.last_offset}): no common history")
    common = first.next_offset  # every batch before this offset matches
    low = first.next_offset
    while low < high:
        middle = (low + high) // 2
        header = _header_at(log_, middle)
        if header is None or header.base_offset >= high:
            break
        matched, source_hw = await _matches(source, tp, header)
        if matched:
            common = max(common, header.next_offset)
            low = header.next_offset
        else:
            high = header.base_offset
    return CommonEnd(common, source_hw, f"the shadow and the source agree up to offset {common}")
