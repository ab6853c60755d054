"""Length-prefixed framing of Kafka requests (sans-I/O).

Bytes go in with :meth:`FrameDecoder.feed`; complete frames come out. A frame
whose declared size is negative or above the configured maximum raises
:class:`FrameTooLarge`, after which the connection must be closed: there is no
way to resynchronise a byte stream whose length prefix cannot be trusted.
"""

from __future__ import annotations

import struct

_SIZE = struct.Struct(">i")


class FrameError(Exception):
    """The byte stream cannot be framed; close the connection."""


class FrameTooLarge(FrameError):
    pass


class FrameDecoder:
    """Receive side of the framing, shaped for ``asyncio.BufferedProtocol``: the kernel writes into
    buffers this class hands out, so a request's bytes are copied once, from the socket.

    Small frames are read into a reusable staging buffer and copied out (one short copy each); a frame
    larger than ``direct_threshold`` gets its own ``bytearray`` as soon as its length is known, the bytes
    already staged are moved into it, and ``get_buffer`` returns the rest of it, so a Produce request's
    record sets land once, in the buffer the handler stamps and writes from. Frames are ``bytearray``s.
    """

    __slots__ = (
        "_max_frame_size",
        "_direct",
        "_staging",
        "_view",
        "_start",
        "_end",
        "_frame",
        "_frame_view",
        "_filled",
    )

    def __init__(
        self, max_frame_size: int, *, staging_size: int = 256 * 1024, direct_threshold: int = 32 * 1024
    ) -> None:
        if direct_threshold + 4 > staging_size:
            raise ValueError("direct_threshold must leave room for a whole small frame in the staging buffer")
        self._max_frame_size = max_frame_size
        self._direct = direct_threshold
        self._staging = bytearray(staging_size)
        self._view = memoryview(self._staging)
        self._start = 0  # first byte of the staging buffer not yet framed
        self._end = 0  # end of the bytes received into the staging buffer
        self._frame: bytearray | None = None  # a large frame being received in place
        self._frame_view = memoryview(b"")
        self._filled = 0

    @property
    def buffered(self) -> int:
        """Bytes received that are not yet part of a returned frame."""
        return (self._end - self._start) + (self._filled + 4 if self._frame is not None else 0)

    def get_buffer(self) -> memoryview:
        """Where the next received bytes go (never empty)."""
        if self._frame is not None:
            return self._frame_view[self._filled :]
        if self._end == len(self._staging) or (self._start and len(self._staging) - self._start < self._direct + 4):
            # compact: the unframed tail moves to the front (at most one small frame's worth of bytes)
            pending = self._end - self._start
            self._staging[:pending] = self._view[self._start : self._end]
            self._start, self._end = 0, pending
        return self._view[self._end :]

    def buffer_updated(self, nbytes: int) -> list[bytearray]:
        """``nbytes`` were written into the last ``get_buffer``; returns every frame now complete, in order."""
        if self._frame is not None:
            self._filled += nbytes
            if self._filled < len(self._frame):
                return []
            frames = [self._frame]
            self._frame, self._frame_view, self._filled = None, memoryview(b""), 0
            return frames
        self._end += nbytes
        return self._split()

    def _split(self) -> list[bytearray]:
        frames: list[bytearray] = []
        view, pos, end = self._view, self._start, self._end
        while end - pos >= 4:
            (size,) = _SIZE.unpack_from(view, pos)
            if size < 0 or size > self._max_frame_size:
                raise FrameTooLarge(
                    f"request size {size} is outside 0..{self._max_frame_size} (socket.request.max.bytes)"
                )
            staged = end - pos - 4
            if staged >= size:
                frames.append(bytearray(view[pos + 4 : pos + 4 + size]))
                pos += 4 + size
            elif size > self._direct:
                frame = bytearray(size)
                frame[:staged] = view[pos + 4 : end]
                self._frame, self._frame_view, self._filled = frame, memoryview(frame), staged
                pos = end
                break
            else:
                break
        if pos == end:
            pos = end = 0
        self._start, self._end = pos, end
        return frames

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytearray]:
        """Add received bytes (a copy: for tests and callers without a ``BufferedProtocol``)."""
        frames: list[bytearray] = []
        source = memoryview(data)
        while len(source):
            target = self.get_buffer()
            n = min(len(target), len(source))
            target[:n] = source[:n]
            source = source[n:]
            frames += self.buffer_updated(n)
        return frames


def frame(payload: bytes | bytearray) -> bytes:
    return _SIZE.pack(len(payload)) + payload
