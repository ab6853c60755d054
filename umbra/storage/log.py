"""The partition log: an ordered list of segments with Kafka's named offsets.

Offsets: ``log_start_offset`` <= ``last_stable_offset`` == ``high_watermark`` <= ``log_end_offset``.
All public methods take an internal lock, so reads may run on a worker thread while the event loop appends.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from bisect import bisect_right
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast, overload

from umbra.errors import (
    DuplicateSequence,
    InvalidRecord,
    KafkaError,
    KafkaStorageError,
    MessageTooLarge,
    OffsetOutOfRange,
)
from umbra.records.batch import (
    BatchHeader,
    check_client_batch,
    parse_header,
    validate_record_set,
    write_base_offset,
    write_log_append_time,
    write_partition_leader_epoch,
)
from umbra.records.crc import Buffer
from umbra.records.records import Record, decode_batch
from umbra.records.validation import validate_records
from umbra.storage.checkpoint import fsync_directory, read_offset, write_offset
from umbra.storage.compaction import CleaningView, require_keys
from umbra.storage.config import LogConfig
from umbra.storage.leader_epoch import LeaderEpochCache
from umbra.storage.producer_state import ProducerStateManager
from umbra.storage.recovery import (
    Recovered,
    commit_swap,
    finish_interrupted_swaps,
    recover_segment,
    segment_bases,
)
from umbra.storage.region import FileRegion, RecordSetPart, close_regions
from umbra.storage.segment import DELETED_SUFFIX, Segment

logger = logging.getLogger(__name__)

LOG_START_OFFSET_FILE = "log-start-offset"
RECOVERY_POINT_FILE = "recovery-point-offset-checkpoint"  # every offset below it was fsynced
_MAX_RELATIVE_OFFSET = 2**31 - 1


# ``append_at_offsets`` called for a position other than the log end offset; an OffsetOutOfRange subclass.
LogEndOffsetMismatch: type[KafkaError] = type("LogEndOffsetMismatch", (OffsetOutOfRange,), {})


def _writable(record_set: Buffer) -> bytearray | memoryview:
    """The record set itself when it is a writable view (of a request or response frame, stamped in place:
    no copy on the hot paths), else a writable copy."""
    if isinstance(record_set, memoryview) and not record_set.readonly:
        return record_set
    return bytearray(record_set)


@dataclass(frozen=True, slots=True)
class AppendResult:
    base_offset: int
    last_offset: int
    log_append_time_ms: int  # -1 for CreateTime
    log_start_offset: int
    duplicate: bool = False


class Log:
    """One partition's log. Build it with :meth:`Log.open`."""

    def __init__(self, directory: Path, topic: str, partition: int, config: LogConfig) -> None:
        self.directory = directory
        self.topic = topic
        self.partition = partition
        self.config = config
        self._segments: list[Segment] = []
        self._bases: list[int] = []
        self._log_start_offset = 0
        self._high_watermark = 0
        self.recovery_point = 0  # everything below this offset has been fsynced
        self._checkpointed_recovery_point: int | None = None  # what RECOVERY_POINT_FILE says
        self._flush_requested = False  # a segment rolled: flush it (Kafka flushes rolled segments too)
        self.producer_state = ProducerStateManager()
        self.epoch_cache = LeaderEpochCache(directory)
        self._unflushed_messages = 0
        self._last_flush_ms: int | None = None  # on the caller's clock; None = baseline at next maybe_flush
        self._lock = threading.RLock()
        self._closed = False
        self._offline: str | None = None  # why the partition is offline after a storage error
        # Segments dropped from the log whose files are not deleted yet: deleting (renames, unlinks) happens
        # after the log lock is released, under _files_lock, which the event loop never takes.
        self._doomed: list[Segment] = []
        self._files_lock = threading.Lock()
        # Directory entries not yet fsynced: a new segment's (this directory), a new partition's (its parent).
        self._unsynced_directories: set[Path] = set()

    # ---- opening and recovery ----------------------------------------------------------------------------
    @classmethod
    def open(cls, directory: Path, topic: str, partition: int, config: LogConfig) -> Log:
        created = not directory.exists()
        directory.mkdir(parents=True, exist_ok=True)
        for leftover in list(directory.glob("*" + DELETED_SUFFIX)) + list(directory.glob("*.tmp")):
            leftover.unlink(missing_ok=True)
        finish_interrupted_swaps(directory)
        log = cls(directory, topic, partition, config)
        log._load()
        if created:
            log._unsynced_directories.update((directory.parent, directory))
        return log

    def _load(self) -> None:
        bases = segment_bases(self.directory)
        checkpointed_start = read_offset(self.directory / LOG_START_OFFSET_FILE)
        checkpointed_recovery = read_offset(self.directory / RECOVERY_POINT_FILE)
        # Without a checkpoint, only the active segment can be torn (what was assumed before there was one).
        recovery_point = checkpointed_recovery if checkpointed_recovery is not None else (bases[-1] if bases else 0)
        rebuild_epochs = not self.epoch_cache.loaded
        if rebuild_epochs:
            self.epoch_cache.clear()
        loaded_epochs = list(self.epoch_cache.entries)
        for i, base in enumerate(bases):
            segment = Segment(self.directory, base, fresh=False)
            self._segments.append(segment)
            self._bases.append(base)
            is_last = i == len(bases) - 1
            may_be_torn = is_last or bases[i + 1] > recovery_point
            result = recover_segment(self, segment, may_be_torn=may_be_torn, is_last=is_last,
                                     rebuild_epochs=rebuild_epochs)
            if result.outcome is Recovered.DAMAGED:
                self._offline = (f"segment {base} is damaged at offset {result.offset} (file position "
                                 f"{result.position}), below the recovery point {recovery_point}: "
                                 f"{result.problem}; no data was deleted")
                logger.error("%s is offline: %s. Restore the segment's files (or move them and every later "
                             "segment aside), then run `umbra storage recover` or restart", self.name, self._offline)
                return
            if result.outcome is Recovered.TRUNCATED and not is_last:
                for doomed in bases[i + 1 :]:  # past the recovery point too: never fsynced, and a log has no holes
                    logger.warning("%s: deleting segment %d, written after the torn one and never fsynced",
                                   self.name, doomed)
                    Segment(self.directory, doomed, fresh=False).delete()
                break
        if not self._segments:
            self._add_segment(Segment(self.directory, checkpointed_start or 0, fresh=True))
        leo = self.log_end_offset
        self._log_start_offset = min(max(checkpointed_start or 0, self._bases[0]), leo)
        self._high_watermark = leo
        self.recovery_point = min(recovery_point, leo)
        self._checkpointed_recovery_point = checkpointed_recovery
        while len(self._segments) > 1 and self._bases[1] <= self._log_start_offset:
            self._segments.pop(0).delete()  # a crash came between the checkpoint and the deletion
            self._bases.pop(0)
        if self.epoch_cache.truncate_from_end(leo) or rebuild_epochs or self.epoch_cache.entries != loaded_epochs:
            self.epoch_cache.persist()

    # ---- named offsets -----------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return f"{self.topic}-{self.partition}"

    @property
    def log_start_offset(self) -> int:
        return self._log_start_offset

    @property
    def log_end_offset(self) -> int:
        return self._segments[-1].next_offset

    @property
    def high_watermark(self) -> int:
        return self._high_watermark

    @high_watermark.setter
    def high_watermark(self, offset: int) -> None:
        with self._lock:
            if not self._log_start_offset <= offset <= self.log_end_offset:
                raise ValueError(f"{self.name}: high watermark {offset} outside "
                                 f"[{self._log_start_offset}, {self.log_end_offset}]")
            self._high_watermark = offset

    @property
    def last_stable_offset(self) -> int:
        return self._high_watermark  # no transactions yet

    @property
    def size_in_bytes(self) -> int:
        return sum(segment.size for segment in self._segments)

    @property
    def max_producer_id(self) -> int:
        return self.producer_state.max_producer_id

    def active_producers(self) -> list[tuple[int, int, int]]:
        """(producer id, epoch, last sequence) of every idempotent producer with state in this log."""
        with self._lock:
            return [(e.producer_id, e.epoch, e.last_sequence if e.last_sequence is not None else -1)
                    for e in self.producer_state.producers.values()]

    @property
    def segment_count(self) -> int:
        return len(self._segments)

    # ---- appends -----------------------------------------------------------------------------------------
    def append_as_leader(self, record_set: Buffer, *, leader_epoch: int, now_ms: int) -> AppendResult:
        """Append producer batches, assigning offsets from the log end offset."""
        with self._lock:
            self._require_online()
            buf = _writable(record_set)
            headers = validate_record_set(buf)
            for header in headers:
                check_client_batch(header)
                if header.size_in_bytes > self.config.max_message_bytes:
                    raise MessageTooLarge(f"batch of {header.size_in_bytes} bytes exceeds max.message.bytes "
                                          f"{self.config.max_message_bytes}")
            validate_records(buf, headers, self.config.max_decompressed_bytes)
            if self.config.compacts:
                require_keys(buf, headers, self.name, self.config.max_decompressed_bytes)
            pending: dict[int, tuple[int, int]] = {}
            for header in headers:
                duplicate = self.producer_state.check(header, pending)
                if duplicate is not None:
                    if len(headers) > 1:
                        raise DuplicateSequence("a batch in a multi-batch record set is a duplicate")
                    return AppendResult(duplicate.first_offset, duplicate.last_offset, -1,
                                        self._log_start_offset, duplicate=True)
            log_append_time = self.config.log_append_time
            next_offset = self.log_end_offset
            stamped: list[BatchHeader] = []
            for header in headers:
                write_base_offset(buf, header.position, next_offset)
                write_partition_leader_epoch(buf, header.position, leader_epoch)
                if log_append_time:
                    write_log_append_time(buf, header.position, now_ms)
                stamped_header = parse_header(buf, header.position)
                stamped.append(stamped_header)
                next_offset = stamped_header.next_offset
            with self._storage_guard():
                self._write(buf, stamped, now_ms)
                if self.epoch_cache.assign(leader_epoch, stamped[0].base_offset):
                    self.epoch_cache.persist()
            return AppendResult(stamped[0].base_offset, stamped[-1].last_offset,
                                now_ms if log_append_time else -1, self._log_start_offset)

    def append_at_offsets(
        self, record_set: Buffer, *, expected_start_offset: int, leader_epoch: int | None, now_ms: int | None = None
    ) -> AppendResult:
        """Append batches at the offsets they carry (replication). Gaps are kept.

        ``leader_epoch`` is stamped on every batch (shadow links); ``None`` keeps the stamped epochs (followers).
        """
        with self._lock:
            self._require_online()
            leo = self.log_end_offset
            if expected_start_offset != leo:
                raise LogEndOffsetMismatch(f"{self.name}: append expected at {expected_start_offset}, "
                                           f"log end offset is {leo}")
            if len(record_set) == 0:
                return AppendResult(leo, leo - 1, -1, self._log_start_offset)
            buf = _writable(record_set)
            headers = validate_record_set(buf)
            previous_next = leo
            for header in headers:
                if header.base_offset < previous_next:
                    raise InvalidRecord(f"{self.name}: batch base offset {header.base_offset} is below "
                                        f"{previous_next}; offsets must increase from the log end offset")
                previous_next = header.next_offset
            if leader_epoch is not None:
                for header in headers:
                    write_partition_leader_epoch(buf, header.position, leader_epoch)
                headers = [header._replace(partition_leader_epoch=leader_epoch) for header in headers]
            with self._storage_guard():
                self._write(buf, headers, now_ms if now_ms is not None else int(time.time() * 1000))
                changed = False
                for header in headers:
                    changed |= self.epoch_cache.assign(header.partition_leader_epoch, header.base_offset)
                if changed:
                    self.epoch_cache.persist()
            return AppendResult(headers[0].base_offset, headers[-1].last_offset, -1, self._log_start_offset)

    def _write(self, buf: bytearray | memoryview, headers: list[BatchHeader], now_ms: int) -> None:
        """Write validated batches, one write per segment touched, rolling where needed."""
        view = memoryview(buf)
        group: list[BatchHeader] = []
        group_bytes = 0
        for header in headers:
            if self._should_roll(header, group_bytes, now_ms):
                self._write_group(view, group, now_ms)
                group, group_bytes = [], 0
                self._roll(header.base_offset)
            group.append(header)
            group_bytes += header.size_in_bytes
        self._write_group(view, group, now_ms)
        for header in headers:
            self.producer_state.update(header)
            self._unflushed_messages += header.record_count

    def _write_group(self, view: memoryview, group: list[BatchHeader], now_ms: int) -> None:
        if not group:
            return
        segment = self._segments[-1]
        if segment.size == 0:
            segment.rolling_base_ms = now_ms
        start = group[0].position
        relative = [header._replace(position=header.position - start) for header in group]
        segment.append(view[start : group[-1].end_position], relative, self.config.index_interval_bytes)

    @contextmanager
    def _storage_guard(self) -> Iterator[None]:
        """Run an append's writes. On any storage error (disk full, I/O error) undo all of them, data and index
        files alike, and take the partition offline: a retry can never land beside a half-written copy."""
        active, count, end = self._segments[-1], len(self._segments), self.log_end_offset
        mark, epochs, unflushed = active.mark(), list(self.epoch_cache.entries), self._unflushed_messages
        try:
            yield
        except (OSError, KafkaStorageError) as exc:
            cause = exc.__cause__ if isinstance(exc, KafkaStorageError) and exc.__cause__ is not None else exc
            keep = self._segments.index(active) + 1 if active in self._segments else count - 1
            for segment in self._segments[keep:]:  # segments this append rolled to
                with suppress(OSError):
                    segment.delete()
            del self._segments[keep:]
            del self._bases[keep:]
            try:
                if active in self._segments:
                    active.restore(mark)
                else:  # the append rolled away from an empty active segment: put an empty one back
                    self._add_segment(Segment(self.directory, active.base_offset, fresh=True))
            except OSError as undo_error:
                logger.error("%s: could not undo a failed append (%s); recovery will cut it on restart",
                             self.name, undo_error)
            self.producer_state.truncate_to(end)
            self.epoch_cache.entries = epochs
            self._unflushed_messages = unflushed
            self._go_offline(f"an append failed: {cause}")
            raise KafkaStorageError(f"{self.name} is offline: an append failed: {cause}") from exc

    def _go_offline(self, reason: str) -> None:
        if self._offline is None:
            logger.error("%s is offline: %s", self.name, reason)
        self._offline = reason

    def _require_online(self) -> None:
        if self._offline is not None:
            raise KafkaStorageError(f"{self.name} is offline: {self._offline}")

    @property
    def offline_reason(self) -> str | None:
        """Why the partition is offline (a storage error), or None while it serves."""
        return self._offline

    def bring_online(self) -> None:
        """Re-open an offline partition from its files, recovery cutting whatever a failed write left (the
        operator freed space, or the disk came back). Raises KafkaStorageError if it still cannot be."""
        with self._lock:
            if self._offline is None:
                return
            for segment in self._segments:
                with suppress(OSError):
                    segment.close()
            self._segments, self._bases = [], []
            self.producer_state = ProducerStateManager()
            self.epoch_cache = LeaderEpochCache(self.directory)
            self._offline = None
            try:
                self._load()  # goes offline again if it finds damage below the recovery point
            except OSError as exc:
                self._offline = f"recovery failed: {exc}"
            if self._offline is not None:
                raise KafkaStorageError(f"{self.name} is still offline: {self._offline}")
            logger.warning("%s is online again at log end offset %d", self.name, self.log_end_offset)

    def _should_roll(self, header: BatchHeader, pending_bytes: int, now_ms: int) -> bool:
        segment = self._segments[-1]
        if header.last_offset - segment.base_offset > _MAX_RELATIVE_OFFSET:
            return True
        if segment.size + pending_bytes == 0:
            return False
        if segment.size + pending_bytes + header.size_in_bytes > self.config.segment_bytes:
            return True
        base_ms = segment.rolling_base_ms
        return pending_bytes == 0 and base_ms is not None and now_ms - base_ms > self.config.roll_ms

    def _roll(self, base_offset: int) -> None:
        active = self._segments[-1]
        if active.size == 0:
            self._segments.pop()
            self._bases.pop()
            active.delete()
        else:
            active.seal()
            self._flush_requested = True  # the next housekeeping run flushes it and moves the recovery point
        self._add_segment(Segment(self.directory, base_offset, fresh=True))

    def _add_segment(self, segment: Segment) -> None:
        self._segments.append(segment)
        self._bases.append(segment.base_offset)
        self._unsynced_directories.add(self.directory)

    # ---- reads -------------------------------------------------------------------------------------------
    @overload
    def read(self, fetch_offset: int, max_bytes: int, *, max_offset: int | None = None,
             min_one_batch: bool = True, regions_ok: Literal[False] = False) -> bytes | memoryview: ...

    @overload
    def read(self, fetch_offset: int, max_bytes: int, *, max_offset: int | None = None,
             min_one_batch: bool = True, regions_ok: bool) -> RecordSetPart | list[RecordSetPart]: ...

    def read(self, fetch_offset: int, max_bytes: int, *, max_offset: int | None = None,
             min_one_batch: bool = True, regions_ok: bool = False) -> RecordSetPart | list[RecordSetPart]:
        """Whole batches from the one containing ``fetch_offset``, below ``max_offset``, within ``max_bytes``
        (but at least one batch if ``min_one_batch``). Crosses segments.

        With ``regions_ok`` (the Fetch handler), large cuts come back as ``FileRegion``s to be sent with
        ``os.sendfile``, and a read that crosses segments as a list of parts; the caller closes the regions
        (``region.close_regions``). Without it, the result is always bytes or a memoryview."""
        with self._lock:
            self._require_online()
            leo = self.log_end_offset
            if fetch_offset < self._log_start_offset or fetch_offset > leo:
                raise OffsetOutOfRange(f"{self.name}: offset {fetch_offset} is outside "
                                       f"[{self._log_start_offset}, {leo}]")
            parts: list[RecordSetPart] = []
            budget = max_bytes
            try:
                for segment in self._segments[self._segment_index(fetch_offset) :]:
                    first = segment.find_batch(fetch_offset)
                    if first is None:
                        continue
                    data, stop = segment.read_batches(first.position, budget, max_offset,
                                                      min_one_batch and not parts, regions_ok=regions_ok)
                    if data:
                        parts.append(data)
                        budget -= len(data)
                    if stop or budget <= 0:
                        break
            except BaseException:
                close_regions(parts)
                raise
            if len(parts) == 1:
                return parts[0]
            if any(isinstance(part, FileRegion) for part in parts):
                return parts
            return b"".join(cast(list[bytes | memoryview], parts))

    def _segment_index(self, offset: int) -> int:
        return max(bisect_right(self._bases, offset) - 1, 0)

    def _batches_from(self, segment_index: int, offset: int) -> Iterator[tuple[Segment, BatchHeader]]:
        for segment in self._segments[segment_index:]:
            first = segment.find_batch(offset)
            if first is None:
                continue
            for header in segment.scan(check_crc=False, start=first.position):
                yield segment, header

    def _decode(self, segment: Segment, header: BatchHeader) -> list[Record]:
        return decode_batch(segment.read(header.position, header.size_in_bytes),
                            max_decompressed=self.config.max_decompressed_bytes)[1]

    def offset_for_timestamp(self, timestamp_ms: int) -> tuple[int, int] | None:
        """(offset, timestamp) of the first record at or after ``log_start_offset`` with timestamp >= target."""
        with self._lock:
            self._require_online()
            for index, segment in enumerate(self._segments):
                if segment.max_timestamp < timestamp_ms:
                    continue
                start = max(segment.time_index.lookup_before(timestamp_ms) or segment.base_offset,
                            self._log_start_offset)
                for batch_segment, header in self._batches_from(index, start):
                    if header.max_timestamp < timestamp_ms or header.last_offset < self._log_start_offset:
                        continue
                    for record in self._decode(batch_segment, header):
                        if record.timestamp >= timestamp_ms and record.offset >= self._log_start_offset:
                            return record.offset, record.timestamp
                return None
            return None

    def max_timestamp(self) -> tuple[int, int]:
        """(offset, timestamp) of the record with the largest timestamp; (-1, -1) for an empty log."""
        with self._lock:
            self._require_online()
            best: Segment | None = None
            for segment in self._segments:
                if segment.max_timestamp >= 0 and (best is None or segment.max_timestamp > best.max_timestamp):
                    best = segment
            if best is None:
                return -1, -1
            header = best.find_batch(best.offset_of_max_timestamp)
            if header is not None:
                for record in self._decode(best, header):
                    if record.timestamp == best.max_timestamp:
                        return record.offset, record.timestamp
            return best.offset_of_max_timestamp, best.max_timestamp

    def end_offset_for_leader_epoch(self, epoch: int, current_epoch: int = -1) -> tuple[int, int]:
        """(the largest epoch <= ``epoch`` with data or current, where it ends); (-1, -1) when unknown.

        ``current_epoch`` is the epoch this log is led at now, which ends at the log end offset even before
        anything was appended in it."""
        with self._lock:
            self._require_online()
            if 0 <= current_epoch <= epoch and current_epoch >= self.epoch_cache.latest_epoch:
                return current_epoch, self.log_end_offset
            return self.epoch_cache.end_offset_for(epoch, self.log_end_offset)

    # ---- truncation and retention ------------------------------------------------------------------------
    def truncate_to(self, offset: int) -> None:
        """Drop every batch holding offsets >= ``offset``; the log end offset becomes <= ``offset``."""
        with self._lock:
            self._require_online()
            if offset >= self.log_end_offset:
                return
            index = bisect_right(self._bases, offset) - 1
            new_end = offset
            if index >= 0:
                segment = self._segments[index]
                header = segment.find_batch(offset)
                if header is not None:
                    new_end = min(offset, header.base_offset)
                    segment.truncate_to_position(header.position, header.base_offset)
                    segment.recompute_stats()
            if index < 0 or new_end < self._log_start_offset:
                self._truncate_fully(offset)
            else:
                self._doomed += self._segments[index + 1 :]
                del self._segments[index + 1 :]
                del self._bases[index + 1 :]
                self._segments[-1].next_offset = max(self._segments[-1].next_offset, new_end)
                self._after_truncation(self.log_end_offset)
        self._reap()
        self._write_log_start_checkpoint()
        self._lower_recovery_checkpoint()

    def restart_at(self, offset: int) -> None:
        """Drop everything and continue, empty, at ``offset`` (a new shadow partition adopting its source's start)."""
        with self._lock:
            self._require_online()
            self._truncate_fully(offset)
            # Nothing is below the new start, so everything up to it counts as replicated.
            self._high_watermark = offset
        self._reap()
        self._write_log_start_checkpoint()
        self._lower_recovery_checkpoint()

    def _truncate_fully(self, offset: int) -> None:
        self._doomed += [segment for segment in self._segments if segment.base_offset != offset]
        for segment in self._segments:
            if segment.base_offset == offset:  # the fresh segment takes its files' names: gone at once
                segment.delete()
        self._segments, self._bases = [], []
        self._add_segment(Segment(self.directory, offset, fresh=True))
        self._log_start_offset = offset
        self.producer_state.clear()
        self.epoch_cache.clear()
        self._after_truncation(offset)

    def _after_truncation(self, end: int) -> None:
        self._high_watermark = min(self._high_watermark, end)
        self.recovery_point = min(self.recovery_point, end)
        self.producer_state.truncate_to(end)
        self.epoch_cache.truncate_from_end(end)
        self.epoch_cache.persist()

    def advance_log_start_offset(self, offset: int) -> None:
        """DeleteRecords / prefix truncation: offsets below ``offset`` become unreadable; whole segments below
        it are deleted. Persisted atomically."""
        with self._lock:
            self._require_online()
            if offset > self._high_watermark:
                raise OffsetOutOfRange(f"{self.name}: cannot move log start offset to {offset}, "
                                       f"above the high watermark {self._high_watermark}")
            if offset <= self._log_start_offset:
                return
            self._log_start_offset = offset
            while len(self._segments) > 1 and self._bases[1] <= offset:
                self._delete_oldest_segment()
            active = self._segments[-1]
            if len(self._segments) == 1 and active.size > 0 and active.next_offset <= offset:
                self._roll(active.next_offset)
                self._delete_oldest_segment()
            if self.epoch_cache.truncate_from_start(offset):
                self.epoch_cache.persist()
        self._reap()
        self._write_log_start_checkpoint()

    def enforce_retention(self, now_ms: int) -> int:
        """Delete whole non-active segments past retention.ms / retention.bytes; returns bytes deleted."""
        with self._lock:
            if not self.config.deletes or self._offline is not None:
                return 0
            deleted = 0
            retention_ms = self.config.retention_ms
            while retention_ms >= 0 and self._deletable_oldest():
                oldest = self._segments[0]
                newest_ms = oldest.max_timestamp if oldest.max_timestamp >= 0 else oldest.last_modified_ms()
                if now_ms - newest_ms <= retention_ms:
                    break
                deleted += self._delete_oldest_segment()
            retention_bytes = self.config.retention_bytes
            if retention_bytes >= 0:
                size = self.size_in_bytes
                while self._deletable_oldest() and size - self._segments[0].size >= retention_bytes:
                    freed = self._delete_oldest_segment()
                    size -= freed
                    deleted += freed
            moved = self._bases[0] > self._log_start_offset
            if moved:
                self._log_start_offset = self._bases[0]
                if self.epoch_cache.truncate_from_start(self._log_start_offset):
                    self.epoch_cache.persist()
        self._reap()
        if moved:
            self._write_log_start_checkpoint()
        return deleted

    def _deletable_oldest(self) -> bool:
        return len(self._segments) > 1 and self._bases[1] <= self._high_watermark

    def _delete_oldest_segment(self) -> int:
        segment = self._segments.pop(0)
        self._bases.pop(0)
        self._doomed.append(segment)
        return segment.size

    def _reap(self) -> None:
        """Delete the files of segments the log dropped (outside the log lock)."""
        with self._lock:
            doomed, self._doomed = self._doomed, []
        if doomed:
            with self._files_lock:
                for segment in doomed:
                    segment.delete()

    def _lower_recovery_checkpoint(self) -> None:
        """After a truncation: a checkpointed recovery point past the new end would let the next start-up
        trust segments rewritten since, unflushed. Written at once (outside the log lock)."""
        checkpointed = self._checkpointed_recovery_point
        if checkpointed is not None and checkpointed > self.recovery_point:
            self.checkpoint_recovery_point()

    def _write_log_start_checkpoint(self) -> None:
        """Write the log start offset (durably) outside the log lock; the newest value always lands last."""
        with self._files_lock:
            write_offset(self.directory / LOG_START_OFFSET_FILE, self._log_start_offset)

    # ---- compaction (the cleaner in cleaner.py does the work off the lock) -------------------------------
    def cleaning_view(self) -> CleaningView:
        with self._lock:
            producer_last_offsets = frozenset(entry.batches[-1].last_offset
                                              for entry in self.producer_state.producers.values() if entry.batches)
            return CleaningView(tuple(self._segments), tuple(s.size for s in self._segments), self._log_start_offset,
                                self._high_watermark, self.config, producer_last_offsets)

    def replace_segments(self, old: list[Segment], sizes: list[int], new: Segment, end_offset: int) -> bool:
        """Swap the cleaned ``new`` (``.cleaned`` files, flushed) in for ``old``, a run of non-active segments
        covering ``[new.base_offset, end_offset)``. False (nothing changed) if the log moved on meanwhile:
        closed, or those segments deleted, truncated or no longer in place."""
        with self._lock:
            if self._closed or not old or old[-1] is self._segments[-1]:
                return False
            try:
                first = next(i for i, segment in enumerate(self._segments) if segment is old[0])
            except StopIteration:
                return False
            if (self._segments[first : first + len(old)] != old or self._bases[first + len(old)] != end_offset
                    or [segment.size for segment in old] != sizes):
                return False
            self._segments[first : first + len(old)] = [new]
            self._bases[first : first + len(old)] = [new.base_offset]
            # The files are swapped under _files_lock, not the log lock: the log already reads ``new`` (its fds
            # stay valid through the renames), and a crash before the swap commits keeps the old segments.
            self._files_lock.acquire()
        try:
            commit_swap(new, old, end_offset)
        finally:
            self._files_lock.release()
        return True

    # ---- configuration, durability, lifecycle ------------------------------------------------------------
    def update_config(self, config: LogConfig) -> None:
        with self._lock:
            self.config = config

    def flush(self) -> None:
        """fsync data and index files with unsynced writes, and the directory entries of new segments and of
        a new partition. The fsyncs run without the log lock (on duplicates of the fds), so appends on the
        event loop never wait for the disk. A failed fsync takes the partition offline."""
        with self._lock:
            if self._offline is not None or self._closed:
                return
            end, unflushed = self.log_end_offset, self._unflushed_messages
            fds = [fd for segment in self._segments for fd in segment.unsynced_fds()]
            directories, self._unsynced_directories = self._unsynced_directories, set()
        try:
            for fd in fds:
                os.fsync(fd)
            for directory in sorted(directories, key=lambda d: len(d.parts), reverse=True):
                fsync_directory(directory)
        except OSError as exc:
            with self._lock:
                self._go_offline(f"fsync failed: {exc}")
            raise KafkaStorageError(f"{self.name} is offline: fsync failed: {exc}") from exc
        finally:
            for fd in fds:
                os.close(fd)
        with self._lock:
            self.recovery_point = max(self.recovery_point, end)
            self._unflushed_messages = max(self._unflushed_messages - unflushed, 0)
            self._last_flush_ms = None
            self._flush_requested = False

    def checkpoint_recovery_point(self) -> bool:
        """Write the recovery point (durably) if it changed: the next start-up CRC-checks only the segments
        at or past it. Runs outside the log lock (the housekeeping worker, a truncation, close); returns
        whether it wrote."""
        with self._files_lock:
            with self._lock:
                point = self.recovery_point
            if point == self._checkpointed_recovery_point or self._offline is not None:
                return False
            try:
                write_offset(self.directory / RECOVERY_POINT_FILE, point)
            except OSError as exc:  # the old checkpoint stays: the next start-up only re-scans more
                logger.warning("%s: could not write the recovery point checkpoint: %s", self.name, exc)
                return False
            self._checkpointed_recovery_point = point
            return True

    def maybe_flush(self, now_ms: int) -> bool:
        """Flush if flush.messages or flush.ms says so, or a segment rolled; returns whether it did."""
        with self._lock:
            if self._last_flush_ms is None or self.recovery_point == self.log_end_offset:
                self._last_flush_ms = now_ms
            if self.recovery_point == self.log_end_offset or self._offline is not None:
                return False
            by_count = self.config.flush_messages is not None and self._unflushed_messages >= self.config.flush_messages
            by_time = self.config.flush_ms is not None and now_ms - self._last_flush_ms >= self.config.flush_ms
            if not (by_count or by_time or self._flush_requested):
                return False
            rolled = self._flush_requested
        self.flush()
        with self._lock:
            self._last_flush_ms = now_ms
        if rolled:
            self.checkpoint_recovery_point()
        return True

    def close(self, *, flush: bool = True) -> None:
        if flush:
            with suppress(KafkaStorageError):  # an offline partition has nothing more to keep
                self.flush()
                self.checkpoint_recovery_point()  # a clean shutdown: the next start re-scans nothing
        with self._lock:
            self._closed = True
            for segment in self._segments:
                segment.close()

    def __repr__(self) -> str:
        return (f"Log({self.name}, start={self._log_start_offset}, hw={self._high_watermark}, "
                f"end={self.log_end_offset}, segments={len(self._segments)})")


__all__ = ["AppendResult", "Log", "LogEndOffsetMismatch"]
