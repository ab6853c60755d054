"""The log cleaner: compaction of logs with ``cleanup.policy`` containing ``compact``.

One pass over a log (``LogCleaner.clean_log``, run on a worker thread, never under the log lock for long):

1. The cleanable range is the non-active segments from the log start, stopping at the first segment that
   reaches above the high watermark or is younger than ``min.compaction.lag.ms``. Its end is a segment base.
2. The dirty part starts at the cleaner checkpoint (``cleaner-offset-checkpoint``, the end of the last pass).
   The pass runs only when dirty bytes / cleanable bytes >= ``min.cleanable.dirty.ratio``, or when the
   earliest dirty record is older than ``max.compaction.lag.ms`` (for which the active segment of a compacted
   log also rolls at that age: ``LogConfig.roll_ms``).
3. An offset map (key -> latest offset) is built from the dirty part's records.
4. Runs of adjacent segments (together at most ``segment.bytes``) are rewritten into one ``.cleaned`` segment
   each, batch by batch with ``compaction.filter_batch``, then swapped in under the lock
   (``Log.replace_segments``, crash-safe: see ``recovery.py``).

Segment files are read through duplicated fds, so retention or a partition deletion may close the segments
meanwhile; the swap then notices that the log moved on and the cleaned files are discarded. Readers holding
``FileRegion``s of replaced segments keep reading the old files (they hold their own fds).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from umbra.records.batch import BatchHeader, parse_header
from umbra.records.records import decode_batch
from umbra.storage.checkpoint import read_offset, write_offset
from umbra.storage.compaction import CleaningView, filter_batch
from umbra.storage.log import Log
from umbra.storage.recovery import CLEANED_SUFFIX, swap_marker
from umbra.storage.segment import Segment, SegmentScan, segment_path

logger = logging.getLogger(__name__)

CLEANER_CHECKPOINT_FILE = "cleaner-offset-checkpoint"
# The offset map is a dict of keys: stop the dirty part at the segment where it grows past this many keys
# (Kafka bounds its map by log.cleaner.dedupe.buffer.size instead).
MAX_MAP_KEYS = 2_000_000
_WRITE_CHUNK = 1024 * 1024
_MAX_RELATIVE_OFFSET = 2**31 - 1
_LONG_MAX = 2**63 - 1  # max.compaction.lag.ms unset


class CleaningStopped(Exception):
    """The cleaner was asked to stop (broker shutdown) in the middle of a log."""


@dataclass(slots=True)
class CleanResult:
    topic: str
    partition: int
    segments_read: int = 0
    segments_written: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    records_removed: int = 0
    first_dirty_offset: int = 0
    end_offset: int = 0
    swaps_abandoned: int = 0


@dataclass(slots=True)
class _Plan:
    segments: list[Segment]
    sizes: list[int]
    end_offset: int  # base of the first segment not cleaned
    first_dirty_offset: int
    latest: dict[bytes, int] = field(default_factory=dict)


class LogCleaner:
    """Compacts logs one at a time; ``stop`` makes a running pass give up at the next batch."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._busy = threading.Lock()

    def stop(self) -> None:
        self._stop.set()

    def wait_idle(self) -> None:
        """Block until no pass is running (after ``stop``, that is soon)."""
        with self._busy:
            pass

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def clean_log(self, log: Log, now_ms: int, *, force: bool = False) -> CleanResult | None:
        """Clean ``log`` if its policy compacts and it is dirty enough (``force`` ignores the dirty ratio).
        Returns what was done, or None when nothing was due."""
        with self._busy:
            if self._stop.is_set() or log.offline_reason is not None:
                return None
            view = log.cleaning_view()
            if not view.config.compacts:
                return None
            plan = self._plan(log, view, now_ms, force)
            if plan is None:
                return None
            result = CleanResult(log.topic, log.partition, first_dirty_offset=plan.first_dirty_offset,
                                 end_offset=plan.end_offset)
            try:
                self._build_offset_map(plan, result)
                complete = self._rewrite(log, view, plan, now_ms, result)
            except CleaningStopped:
                return result
            if complete:
                write_offset(log.directory / CLEANER_CHECKPOINT_FILE, plan.end_offset)
            logger.info("%s: cleaned [%d, %d): %d segments (%d bytes) -> %d (%d bytes), %d records removed",
                        log.name, view.log_start_offset, plan.end_offset, result.segments_read, result.bytes_read,
                        result.segments_written, result.bytes_written, result.records_removed)
            return result

    # ---- planning ----------------------------------------------------------------------------------------
    def _plan(self, log: Log, view: CleaningView, now_ms: int, force: bool) -> _Plan | None:
        config = view.config
        cleanable = 0
        for segment in view.segments[:-1]:
            if segment.next_offset > view.high_watermark:
                break
            if config.min_compaction_lag_ms > 0:
                newest = segment.max_timestamp if segment.max_timestamp >= 0 else segment.last_modified_ms()
                if now_ms - newest < config.min_compaction_lag_ms:
                    break
            cleanable += 1
        if cleanable == 0:
            return None
        end_offset = view.segments[cleanable].base_offset
        checkpoint = read_checkpoint(log)
        first_dirty = view.log_start_offset
        if checkpoint is not None and view.log_start_offset <= checkpoint <= log.log_end_offset:
            first_dirty = checkpoint
        segments = list(view.segments[:cleanable])
        sizes = list(view.sizes[:cleanable])
        dirty = sum(size for segment, size in zip(segments, sizes, strict=True) if segment.next_offset > first_dirty)
        total = sum(sizes)
        due = dirty > 0 and (dirty >= config.min_cleanable_dirty_ratio * total
                             or _overdue(segments, sizes, first_dirty, now_ms, config.max_compaction_lag_ms))
        if not (force or due):
            return None
        return _Plan(segments, sizes, end_offset, min(first_dirty, end_offset))

    def _build_offset_map(self, plan: _Plan, result: CleanResult) -> None:
        """key -> latest offset over the dirty part; may shorten the plan to bound the map's size."""
        for index, segment in enumerate(plan.segments):
            if segment.next_offset <= plan.first_dirty_offset:
                continue
            for raw, header in self._batches(segment, plan.sizes[index]):
                if header.is_control or header.last_offset < plan.first_dirty_offset:
                    continue
                for record in decode_batch(raw)[1]:
                    if record.key is not None and record.offset >= plan.first_dirty_offset:
                        plan.latest[record.key] = record.offset
            if len(plan.latest) > MAX_MAP_KEYS and index + 1 < len(plan.segments):
                plan.end_offset = plan.segments[index + 1].base_offset
                del plan.segments[index + 1 :]
                del plan.sizes[index + 1 :]
                result.end_offset = plan.end_offset
                return

    def _batches(self, segment: Segment, size: int) -> Iterator[tuple[bytes, BatchHeader]]:
        """(bytes, header at position 0) of every batch of a segment, read through a dup of its fd."""
        fd = segment.dup_fd()
        try:
            for header in SegmentScan(fd, size, check_crc=False):
                if self._stop.is_set():
                    raise CleaningStopped
                yield os.pread(fd, header.size_in_bytes, header.position), header._replace(position=0)
        finally:
            os.close(fd)

    # ---- rewriting ---------------------------------------------------------------------------------------
    def _rewrite(self, log: Log, view: CleaningView, plan: _Plan, now_ms: int, result: CleanResult) -> bool:
        """Clean every group of the plan; False if a swap was abandoned (the log changed under us)."""
        for group, sizes, group_end in _groups(plan, view.config.segment_bytes):
            new = Segment(log.directory, group[0].base_offset, fresh=True, suffix=CLEANED_SUFFIX)
            try:
                self._write_group(new, group, sizes, plan, view, now_ms, result)
                new.seal()
                new.flush()
                swapped = log.replace_segments(group, sizes, new, group_end)
            except BaseException:
                _discard(new)
                raise
            if not swapped:
                _discard(new)
                result.swaps_abandoned += 1
                return False
            result.segments_read += len(group)
            result.segments_written += 1
            result.bytes_read += sum(sizes)
            result.bytes_written += new.size
        return True

    def _write_group(self, new: Segment, group: list[Segment], sizes: list[int], plan: _Plan, view: CleaningView,
                     now_ms: int, result: CleanResult) -> None:
        config = view.config
        pending: list[bytes] = []
        headers: list[BatchHeader] = []
        pending_bytes = 0
        for segment, size in zip(group, sizes, strict=True):
            for raw, header in self._batches(segment, size):
                filtered = filter_batch(raw, header, plan.latest, now_ms=now_ms,
                                        delete_retention_ms=config.delete_retention_ms,
                                        keep_empty=header.has_producer_id
                                        and header.last_offset in view.producer_last_offsets)
                result.records_removed += filtered.records_removed
                if filtered.data is None:
                    continue
                headers.append(parse_header(filtered.data)._replace(position=pending_bytes))
                pending.append(filtered.data)
                pending_bytes += len(filtered.data)
                if pending_bytes >= _WRITE_CHUNK:
                    new.append(b"".join(pending), headers, config.index_interval_bytes)
                    pending, headers, pending_bytes = [], [], 0
        if pending:
            new.append(b"".join(pending), headers, config.index_interval_bytes)


def _overdue(segments: list[Segment], sizes: list[int], first_dirty: int, now_ms: int, max_lag_ms: int) -> bool:
    """``max.compaction.lag.ms``: the earliest uncleaned record is older than that, whatever the dirty ratio.
    Its age is the first dirty batch's first timestamp (a segment's modification time when it has none)."""
    if max_lag_ms >= _LONG_MAX:
        return False
    for segment, size in zip(segments, sizes, strict=True):
        if segment.next_offset <= first_dirty:
            continue
        for header in segment.scan(check_crc=False):
            if header.position >= size:
                break
            if header.last_offset >= first_dirty:
                earliest = header.base_timestamp if header.base_timestamp >= 0 else segment.last_modified_ms()
                return now_ms - earliest >= max_lag_ms
        return False
    return False


def _groups(plan: _Plan, segment_bytes: int) -> Iterable[tuple[list[Segment], list[int], int]]:
    """Runs of adjacent segments to merge: together at most ``segment.bytes``, offsets within one index."""
    segments, sizes = plan.segments, plan.sizes
    start = 0
    while start < len(segments):
        stop = start + 1
        total = sizes[start]
        while stop < len(segments):
            next_end = segments[stop + 1].base_offset if stop + 1 < len(segments) else plan.end_offset
            if total + sizes[stop] > segment_bytes or next_end - segments[start].base_offset > _MAX_RELATIVE_OFFSET:
                break
            total += sizes[stop]
            stop += 1
        end = segments[stop].base_offset if stop < len(segments) else plan.end_offset
        yield segments[start:stop], sizes[start:stop], end
        start = stop


def _discard(segment: Segment) -> None:
    segment.close()
    if swap_marker(segment.directory, segment.base_offset).exists():
        # The swap committed and then failed: the .cleaned files are the data now; recovery finishes it.
        logger.error("%s: swap of segment %d failed after its commit; it completes at the next start",
                     segment.directory.name, segment.base_offset)
        return
    for kind in (".log", ".index", ".timeindex"):
        segment_path(segment.directory, segment.base_offset, kind, CLEANED_SUFFIX).unlink(missing_ok=True)


def read_checkpoint(log: Log) -> int | None:
    """The end of the last cleaning pass (where the dirty part starts), if recorded."""
    return read_offset(log.directory / CLEANER_CHECKPOINT_FILE)


__all__ = ["CLEANER_CHECKPOINT_FILE", "CleanResult", "LogCleaner", "read_checkpoint"]
