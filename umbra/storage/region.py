"""A byte range of a segment file handed to the network layer, to be sent with ``os.sendfile``.

A :class:`FileRegion` owns a duplicate of the segment's fd: retention may delete and close the segment
while the region waits to be sent, and the duplicate keeps the file (and the fd number) ours until
:meth:`FileRegion.close`. A truncation of the file under it shows up as a short read or send
(:class:`RegionTruncated`); the caller has already promised the length, so it must drop the connection.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

__all__ = ["FileRegion", "RegionTruncated", "RecordSetPart", "close_regions", "record_set_size"]


class RegionTruncated(Exception):
    """The file ended before the region did: it was truncated after the region was cut."""


class FileRegion:
    """``length`` bytes at ``offset`` of a file; ``len()`` is the length. Close it exactly when done."""

    __slots__ = ("fd", "offset", "length")

    def __init__(self, fd: int, offset: int, length: int) -> None:
        self.fd = os.dup(fd)
        self.offset = offset
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __repr__(self) -> str:
        return f"FileRegion(fd={self.fd}, offset={self.offset}, length={self.length})"

    def read(self) -> bytes:
        """The region's bytes (the fallback when it cannot be sent from the file)."""
        if self.fd < 0:
            raise ValueError("read of a closed FileRegion")
        data = os.pread(self.fd, self.length, self.offset)
        if len(data) < self.length:
            parts = [data]
            got = len(data)
            while got < self.length:
                more = os.pread(self.fd, self.length - got, self.offset + got)
                if not more:
                    raise RegionTruncated(f"file ended {self.length - got} bytes before the region's end")
                parts.append(more)
                got += len(more)
            data = b"".join(parts)
        return data

    def chunks(self, size: int) -> Iterator[bytes]:
        """The region's bytes in pieces of at most ``size`` (where it cannot be sent from the file: TLS)."""
        if self.fd < 0:
            raise ValueError("read of a closed FileRegion")
        done = 0
        while done < self.length:
            data = os.pread(self.fd, min(size, self.length - done), self.offset + done)
            if not data:
                raise RegionTruncated(f"file ended {self.length - done} bytes before the region's end")
            done += len(data)
            yield data

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)


RecordSetPart = bytes | memoryview | FileRegion


def record_set_size(records: RecordSetPart | list[RecordSetPart]) -> int:
    """Bytes in a record set that may be split in parts (``Log.read(..., regions_ok=True)``)."""
    if isinstance(records, list):
        return sum(len(part) for part in records)
    return len(records)


def close_regions(pieces: object) -> None:
    """Close every FileRegion in ``pieces`` (a record set, its parts, or a response's pieces); idempotent."""
    if isinstance(pieces, FileRegion):
        pieces.close()
    elif isinstance(pieces, list):
        for piece in pieces:
            if isinstance(piece, FileRegion):
                piece.close()
