"""Sparse per-segment indexes, append-only files mirrored in memory.

``.index``: entries of ``int32 relative offset | int32 file position`` (8 bytes), the relative offset being
the base offset of the batch that starts at that position. ``.timeindex``: entries of ``int64 max
timestamp so far | int32 relative offset`` (12 bytes), appended when the segment's max timestamp grows.

Both are written with ``os.write`` on raw fds and kept in arrays for binary search; a file that fails the
sanity checks on load is emptied and rebuilt from the segment's batches by the caller.
"""

from __future__ import annotations

import os
import struct
from array import array
from bisect import bisect_left, bisect_right
from pathlib import Path

_OFFSET_ENTRY = struct.Struct(">ii")
_TIME_ENTRY = struct.Struct(">qi")


class _IndexFile:
    entry: struct.Struct

    def __init__(self, path: Path, base_offset: int) -> None:
        self.path = path
        self.base_offset = base_offset
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        self._dirty = False

    def _read_entries(self) -> list[tuple[int, ...]]:
        size = os.fstat(self._fd).st_size
        raw = os.pread(self._fd, size, 0)
        usable = len(raw) - len(raw) % self.entry.size
        return [tuple(entry) for entry in self.entry.iter_unpack(raw[:usable])] if usable == len(raw) else []

    def _write(self, *values: int) -> None:
        os.write(self._fd, self.entry.pack(*values))
        self._dirty = True

    def _truncate_entries(self, count: int) -> None:
        os.ftruncate(self._fd, count * self.entry.size)
        self._dirty = True

    def flush(self) -> None:
        if self._dirty and self._fd >= 0:
            os.fsync(self._fd)
            self._dirty = False

    def take_unsynced(self) -> list[int]:
        """A duplicate of the fd if it has unsynced writes (see ``Segment.unsynced_fds``)."""
        if not self._dirty or self._fd < 0:
            return []
        self._dirty = False
        return [os.dup(self._fd)]

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def rename_to(self, path: Path) -> None:
        os.replace(self.path, path)
        self.path = path


class OffsetIndex(_IndexFile):
    """Maps batch base offsets to file positions; lookup returns the greatest entry <= target."""

    entry = _OFFSET_ENTRY

    def __init__(self, path: Path, base_offset: int) -> None:
        super().__init__(path, base_offset)
        self._offsets: array[int] = array("q")
        self._positions: array[int] = array("q")

    def __len__(self) -> int:
        return len(self._offsets)

    def load(self, log_size: int) -> bool:
        """Load entries from disk; empty the file and return False if they are inconsistent."""
        previous_offset = previous_position = -1
        entries = self._read_entries()
        raw_size = os.fstat(self._fd).st_size
        ok = len(entries) * self.entry.size == raw_size
        for relative, position in entries:
            if relative <= previous_offset or position <= previous_position or position >= log_size:
                ok = False
                break
            previous_offset, previous_position = relative, position
        if not ok:
            self.reset()
            return False
        self._offsets = array("q", (self.base_offset + relative for relative, _ in entries))
        self._positions = array("q", (position for _, position in entries))
        return True

    def append(self, offset: int, position: int) -> None:
        if self._offsets and offset <= self._offsets[-1]:
            return
        self._write(offset - self.base_offset, position)
        self._offsets.append(offset)
        self._positions.append(position)

    def lookup(self, target_offset: int) -> tuple[int, int]:
        """(offset, position) of the greatest entry <= target, or (base_offset, 0)."""
        index = bisect_right(self._offsets, target_offset) - 1
        if index < 0:
            return self.base_offset, 0
        return self._offsets[index], self._positions[index]

    def truncate_to(self, offset: int) -> None:
        """Drop entries for batches starting at or after ``offset``."""
        keep = bisect_left(self._offsets, offset)
        if keep < len(self._offsets):
            del self._offsets[keep:]
            del self._positions[keep:]
            self._truncate_entries(keep)

    def reset(self) -> None:
        self._offsets = array("q")
        self._positions = array("q")
        self._truncate_entries(0)


class TimeIndex(_IndexFile):
    """Maps growing max timestamps to the base offset of the batch that raised them."""

    entry = _TIME_ENTRY

    def __init__(self, path: Path, base_offset: int) -> None:
        super().__init__(path, base_offset)
        self._timestamps: array[int] = array("q")
        self._offsets: array[int] = array("q")

    def __len__(self) -> int:
        return len(self._timestamps)

    @property
    def last_entry(self) -> tuple[int, int] | None:
        if not self._timestamps:
            return None
        return self._timestamps[-1], self._offsets[-1]

    def load(self, next_offset_bound: int | None = None) -> bool:
        entries = self._read_entries()
        ok = len(entries) * self.entry.size == os.fstat(self._fd).st_size
        previous_ts = previous_offset = -(2**63)
        for timestamp, relative in entries:
            absolute = self.base_offset + relative
            bad_bound = next_offset_bound is not None and absolute >= next_offset_bound
            if timestamp <= previous_ts or absolute < previous_offset or relative < 0 or bad_bound:
                ok = False
                break
            previous_ts, previous_offset = timestamp, absolute
        if not ok:
            self.reset()
            return False
        self._timestamps = array("q", (timestamp for timestamp, _ in entries))
        self._offsets = array("q", (self.base_offset + relative for _, relative in entries))
        return True

    def maybe_append(self, timestamp: int, offset: int) -> None:
        if self._timestamps and timestamp <= self._timestamps[-1]:
            return
        self._write(timestamp, offset - self.base_offset)
        self._timestamps.append(timestamp)
        self._offsets.append(offset)

    def lookup_before(self, target_timestamp: int) -> int | None:
        """Base offset of the latest entry whose timestamp is < target; every earlier record is < target."""
        index = bisect_left(self._timestamps, target_timestamp) - 1
        if index < 0:
            return None
        return self._offsets[index]

    def truncate_to(self, offset: int) -> None:
        keep = len(self._offsets)
        while keep and self._offsets[keep - 1] >= offset:
            keep -= 1
        if keep < len(self._offsets):
            del self._timestamps[keep:]
            del self._offsets[keep:]
            self._truncate_entries(keep)

    def reset(self) -> None:
        self._timestamps = array("q")
        self._offsets = array("q")
        self._truncate_entries(0)
