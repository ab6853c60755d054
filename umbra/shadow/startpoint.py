"""Is the shadow's end still the source's? A check by batch CRC, for sources that cannot say it with epochs.

A source with leader epochs in its fetch path tells a follower where their logs part (KIP-320). An older
source (Fetch < v9) cannot, and without topic ids (Metadata < v10) a deleted and recreated topic looks
like the old one. So before a partition replicates on from such a source, its last batch in the shadow
is compared with the source's batch at the same offset: base offset, last offset and CRC. The CRC covers
every byte of the batch but its base offset and partition leader epoch, so equal CRCs mean the same
records, keys, values, headers and timestamps.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

from umbra.client.errors import ClientError
from umbra.errors import ErrorCode, OffsetOutOfRange
from umbra.records.batch import HEADER_SIZE, BatchHeader, parse_header

if TYPE_CHECKING:
    from umbra.client.cluster import SourceCluster
    from umbra.client.fetch_response import FetchedPartition
    from umbra.storage.log import Log

TopicPartition = tuple[str, int]
# Enough for one whole batch where a source sends whole batches only (as umbra does).
_WHOLE_BATCH_BYTES = 1 << 20


class StartPoint(enum.Enum):
    MATCH = "match"  # same batch: replicate on
    DIVERGED = "diverged"  # the source has other data there, or no longer reaches that far
    UNKNOWN = "unknown"  # the source did not answer usefully: try again later


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: StartPoint
    detail: str


def last_batch_header(log_: Log) -> BatchHeader | None:
    """The header of the shadow log's last batch, or None when the log holds no batch."""
    end = log_.log_end_offset
    if end <= log_.log_start_offset:
        return None
    try:
        data = log_.read(end - 1, HEADER_SIZE)
    except OffsetOutOfRange:
        return None
    if len(data) < HEADER_SIZE:
        return None
    return parse_header(data, 0)


def _describe(header: BatchHeader) -> str:
    return f"offsets {header.base_offset}-{header.last_offset}, CRC {header.crc:#010x}"


def compare(ours: BatchHeader, fetched: FetchedPartition | None) -> Verdict | None:
    """The verdict for the shadow's last batch ``ours`` against the source's answer at its base offset.

    None: the answer holds less than a batch header, so it must be asked again for a whole batch.
    """
    if fetched is None:
        return Verdict(StartPoint.UNKNOWN, "the source did not answer for the partition")
    if fetched.error_code == ErrorCode.OFFSET_OUT_OF_RANGE:
        if 0 <= fetched.log_start_offset and ours.base_offset < fetched.log_start_offset:
            # Retention removed the batch on the source: nothing left to compare, and nothing contradicts.
            return Verdict(StartPoint.MATCH, "the source's retention removed the shadow's last batch")
        return Verdict(StartPoint.DIVERGED, f"the source no longer has offset {ours.base_offset} (its log ends at "
                                            f"{fetched.high_watermark}); the shadow's last batch has {_describe(ours)}")
    if fetched.error_code:
        try:
            name = ErrorCode(fetched.error_code).name
        except ValueError:
            name = f"error {fetched.error_code}"
        return Verdict(StartPoint.UNKNOWN, f"the source answered {name}")
    records = fetched.records
    if len(records) < HEADER_SIZE:
        if fetched.high_watermark <= ours.base_offset:
            return Verdict(StartPoint.DIVERGED, f"the source's log ends at {fetched.high_watermark}, before the "
                                                f"shadow's last batch ({_describe(ours)})")
        return None
    theirs = parse_header(records, 0)
    if (theirs.base_offset, theirs.last_offset, theirs.crc) == (ours.base_offset, ours.last_offset, ours.crc):
        return Verdict(StartPoint.MATCH, f"the shadow's last batch ({_describe(ours)}) equals the source's")
    return Verdict(StartPoint.DIVERGED, f"the shadow's last batch ({_describe(ours)}) differs from the source's "
                                        f"batch at offset {ours.base_offset} ({_describe(theirs)})")


async def check_start_points(source: SourceCluster, logs: list[tuple[TopicPartition, Log]]
                             ) -> dict[TopicPartition, Verdict]:
    """A verdict for each partition's shadow log: one Fetch per source leader for the batch headers, then,
    for sources that send whole batches only, one Fetch per partition whose batch did not fit."""
    verdicts: dict[TopicPartition, Verdict] = {}
    ours: dict[TopicPartition, BatchHeader] = {}
    for tp, log_ in logs:
        header = last_batch_header(log_)
        if header is None:
            verdicts[tp] = Verdict(StartPoint.MATCH, "the shadow partition holds no batch yet")
        else:
            ours[tp] = header
    if not ours:
        return verdicts
    try:
        fetched = await source.fetch_at({tp: header.base_offset for tp, header in ours.items()}, HEADER_SIZE)
        for tp, header in ours.items():
            verdict = compare(header, fetched.get(tp))
            if verdict is None:
                again = await source.fetch_at({tp: header.base_offset}, _WHOLE_BATCH_BYTES)
                verdict = compare(header, again.get(tp)) or Verdict(
                    StartPoint.UNKNOWN, f"the source sent no batch at offset {header.base_offset}")
            verdicts[tp] = verdict
    except (ClientError, OSError, TimeoutError) as exc:
        for tp in ours:
            verdicts.setdefault(tp, Verdict(StartPoint.UNKNOWN, f"Fetch failed: {exc or type(exc).__name__}"))
    return verdicts
