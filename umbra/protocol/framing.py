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
    __slots__ = ("_buf", "_max_frame_size")

    def __init__(self, max_frame_size: int) -> None:
        self._buf = bytearray()
        self._max_frame_size = max_frame_size

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytearray]:
        """Add received bytes; return every frame now complete, in order.

        Frames are ``bytearray``s (one copy each), so the hot paths can stamp record batches in place."""
        buf = self._buf
        buf += data
        frames: list[bytearray] = []
        pos = 0
        end = len(buf)
        while end - pos >= 4:
            (size,) = _SIZE.unpack_from(buf, pos)
            if size < 0 or size > self._max_frame_size:
                raise FrameTooLarge(f"request size {size} is outside 0..{self._max_frame_size} (socket.request.max.bytes)")
            if end - pos - 4 < size:
                break
            frames.append(bytearray(memoryview(buf)[pos + 4 : pos + 4 + size]))
            pos += 4 + size
        if pos:
            del buf[:pos]
        return frames


def frame(payload: bytes | bytearray) -> bytes:
    return _SIZE.pack(len(payload)) + payload
