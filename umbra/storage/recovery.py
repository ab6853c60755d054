"""Bringing a partition directory back to a consistent state: segment recovery on open, and the crash-safe
swap of cleaned segments.

The log cleaner replaces a run of segments ``[base, end)`` by one segment of the same base in three steps:

1. it writes ``<base>.log.cleaned`` (and ``.index.cleaned``, ``.timeindex.cleaned``) and fsyncs them;
2. it writes ``<base>.swap`` holding ``end`` (atomically: temp file, fsync, rename, fsync directory) — the
   commit point;
3. it renames the ``.cleaned`` files over the live ones (indexes first, log last), deletes the other old
   segments of ``[base, end)``, and removes ``<base>.swap``.

On open, a ``.swap`` marker means the swap committed: step 3 is finished (every part of it is idempotent).
``.cleaned`` files without a marker are an interrupted clean: they are deleted and the old segments stay. So
after a crash at any point the log holds either the old segments or the new one, never both or neither.

Segment recovery trusts the partition's recovery point (``recovery-point-offset-checkpoint``: every offset
below it was fsynced). Only segments holding offsets at or past it can hold a torn write: they are CRC-checked
and cut at the first bad batch (later segments then go too: they were not fsynced either, and a log has no
holes). A segment wholly below it that turns out damaged is not a torn write but a damaged disk or a stray
write: nothing is cut or deleted, the partition goes offline with the reason, and the operator restores or
moves the files and brings it back (``umbra storage recover``). Without a checkpoint (a log never flushed,
or written before checkpoints existed), the recovery point is taken to be the last segment's base, which is
what was assumed before: only the active segment could be torn.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from umbra.storage.checkpoint import fsync_directory, read_lines, write_atomically
from umbra.storage.segment import INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX, Segment, segment_path

if TYPE_CHECKING:
    from umbra.storage.log import Log

logger = logging.getLogger(__name__)

CLEANED_SUFFIX = ".cleaned"
SWAP_SUFFIX = ".swap"
_KINDS = (INDEX_SUFFIX, TIME_INDEX_SUFFIX, LOG_SUFFIX)  # the log file last: see rename_to_live
_SEGMENT_FILE = re.compile(r"^(\d{20})\.log$")


def segment_bases(directory: Path) -> list[int]:
    """Base offsets of the live segment files of a partition directory, ascending."""
    return sorted(int(m.group(1)) for p in directory.iterdir() if (m := _SEGMENT_FILE.match(p.name)))


def swap_marker(directory: Path, base_offset: int) -> Path:
    return segment_path(directory, base_offset, SWAP_SUFFIX)


def commit_swap(new: Segment, old: list[Segment], end_offset: int) -> None:
    """Replace the segments ``old`` (``[new.base_offset, end_offset)``) by ``new``, written with the
    ``.cleaned`` suffix and already flushed. The caller holds the log lock and updates its segment list."""
    directory = new.directory
    marker = swap_marker(directory, new.base_offset)
    write_atomically(marker, f"{end_offset}\n")
    old[0].close()  # same base offset: its files are replaced by the renames below
    new.rename_to_live()
    for segment in old[1:]:
        segment.delete()
    fsync_directory(directory)  # the renames and deletions are durable before the marker goes
    marker.unlink(missing_ok=True)


def finish_interrupted_swaps(directory: Path) -> None:
    """Complete committed swaps and drop uncommitted ``.cleaned`` files (before the segments are loaded)."""
    for marker in sorted(directory.glob("*" + SWAP_SUFFIX)):
        lines = read_lines(marker) or []
        try:
            base, end = int(marker.name[: -len(SWAP_SUFFIX)]), int(lines[0])
        except (ValueError, IndexError):
            logger.warning("%s: ignoring unreadable swap marker %s", directory.name, marker.name)
            marker.unlink(missing_ok=True)
            continue
        logger.warning("%s: finishing the interrupted swap of cleaned segments [%d, %d)", directory.name, base, end)
        for kind in _KINDS:
            cleaned = segment_path(directory, base, kind, CLEANED_SUFFIX)
            if cleaned.exists():
                os.replace(cleaned, segment_path(directory, base, kind))
        for doomed in segment_bases(directory):
            if base < doomed < end:
                for kind in _KINDS:
                    segment_path(directory, doomed, kind).unlink(missing_ok=True)
        marker.unlink()
    for leftover in directory.glob("*" + CLEANED_SUFFIX):
        leftover.unlink(missing_ok=True)


class Recovered(Enum):
    """What recovering one segment found."""

    INTACT = "intact"
    TRUNCATED = "truncated"  # a torn or damaged tail past the recovery point was cut
    DAMAGED = "damaged"  # damage below the recovery point: nothing was cut, the partition goes offline


@dataclass(frozen=True, slots=True)
class SegmentRecovery:
    outcome: Recovered
    problem: str | None = None
    offset: int = -1  # the first offset not recovered, when there was a problem
    position: int = -1  # and its file position


def recover_segment(log: Log, segment: Segment, *, may_be_torn: bool, is_last: bool,
                    rebuild_epochs: bool) -> SegmentRecovery:
    """Walk a segment, rebuilding indexes, producer state and (where needed) leader epochs.

    A segment that may be torn (it holds offsets at or past the recovery point: writes not known to be
    fsynced) is CRC-checked batch by batch and cut at the first bad one. A segment wholly below the recovery
    point was fsynced: it is walked header by header, and damage in it is reported, never cut (it is not a
    torn write, and what follows it is durable data)."""
    rebuild_indexes = may_be_torn or not segment.load_indexes()
    if rebuild_indexes:
        segment.reset_indexes()
    scan = segment.scan(check_crc=may_be_torn)
    for header in scan:
        segment.track(header, header.position, log.config.index_interval_bytes, index=rebuild_indexes)
        log.producer_state.update(header)
        if rebuild_epochs or may_be_torn:
            # The checkpoint is not fsynced with the data: epochs that began past the recovery point are
            # re-derived here.
            log.epoch_cache.assign(header.partition_leader_epoch, header.base_offset)
    if scan.problem is not None and not may_be_torn:
        return SegmentRecovery(Recovered.DAMAGED, scan.problem, segment.next_offset, scan.valid_bytes)
    if not rebuild_indexes and not _index_matches(segment):
        logger.warning("%s: rebuilding inconsistent indexes of segment %d", log.name, segment.base_offset)
        segment.reset_indexes()
        for header in segment.scan(check_crc=False):
            segment.track(header, header.position, log.config.index_interval_bytes)
    if scan.problem is None:
        if not is_last:
            segment.seal()
        return SegmentRecovery(Recovered.INTACT)
    truncated = segment.size - scan.valid_bytes
    logger.warning("%s: recovery truncated %d bytes at offset %d (file position %d): %s",
                   log.name, truncated, segment.next_offset, scan.valid_bytes, scan.problem)
    offset = segment.next_offset
    segment.truncate_to_position(scan.valid_bytes, segment.next_offset)
    return SegmentRecovery(Recovered.TRUNCATED, scan.problem, offset, scan.valid_bytes)


def _index_matches(segment: Segment) -> bool:
    """Cheap spot check: the last offset-index entry must point at a batch starting with that offset."""
    offset, position = segment.offset_index.lookup(segment.next_offset)
    if position == 0:
        return True
    data = segment.read(position, 12)
    return len(data) == 12 and int.from_bytes(data[:8], "big", signed=True) == offset
