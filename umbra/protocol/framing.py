"""Length-prefixed framing of Kafka requests (sans-I/O), with memory that follows the bytes received.

Bytes go in with :meth:`FrameDecoder.feed` (or ``get_buffer``/``buffer_updated``, the shape of
``asyncio.BufferedProtocol``); complete frames come out. A frame whose declared size is negative or above the
configured maximum raises :class:`FrameTooLarge`, after which the connection must be closed: there is no way
to resynchronise a byte stream whose length prefix cannot be trusted.

Memory is spent on bytes that arrived, never on sizes that were only declared:

- Reads land in one staging buffer per thread, shared by every decoder (a read and its ``buffer_updated`` run
  back to back on the event loop). A decoder keeps only the bytes of an unfinished small frame, so an idle or
  slow connection costs next to nothing.
- A large frame is received in place into chunks that grow as its bytes arrive: the first holds up to
  ``first_chunk`` bytes (a typical Produce request, received with no copy at all), then each one doubles.
- Every frame's bytes are taken from a :class:`FrameBudget` (the broker's request memory pool) before they
  are buffered. A large frame's chunk that the budget refuses stops the decoder (``blocked``): its caller
  stops reading until the budget has room, then calls :meth:`FrameDecoder.resume`. Small frames are always
  admitted (their bytes are already in memory) but count against the budget, which then blocks the next
  large chunk. The caller gives each frame's bytes back with ``FrameBudget.release`` once it is handled.
"""

from __future__ import annotations

import struct
import threading
from typing import Protocol

_SIZE = struct.Struct(">i")


class FrameError(Exception):
    """The byte stream cannot be framed; close the connection."""


class FrameTooLarge(FrameError):
    def __init__(self, message: str, size: int) -> None:
        super().__init__(message)
        self.size = size  # the frame size the stream announced


class FrameBudget(Protocol):
    """Bytes of requests buffered but not yet handled (Kafka's ``queued.max.request.bytes``)."""

    def reserve(self, size: int, *, force: bool = False) -> bool:
        """Take ``size`` bytes; False (nothing taken) when there is no room now, unless ``force``."""
        ...

    def release(self, size: int) -> None: ...


class _Unbounded:
    def reserve(self, size: int, *, force: bool = False) -> bool:
        return True

    def release(self, size: int) -> None:
        pass


UNBOUNDED: FrameBudget = _Unbounded()
_threads = threading.local()


def _staging(size: int) -> bytearray:
    """This thread's staging buffer (at least ``size`` bytes)."""
    buffer: bytearray | None = getattr(_threads, "staging", None)
    if buffer is None or len(buffer) < size:
        buffer = _threads.staging = bytearray(size)
    return buffer


class FrameDecoder:
    """Receive side of the framing for one connection. Frames are ``bytearray``s of exactly their size."""

    __slots__ = ("_max_frame_size", "_direct", "_staging_size", "_first_chunk", "_budget", "_pending",
                 "_size", "_chunks", "_chunk_view", "_filled", "_received", "_held", "blocked")

    def __init__(self, max_frame_size: int, *, budget: FrameBudget = UNBOUNDED, staging_size: int = 256 * 1024,
                 direct_threshold: int = 32 * 1024, first_chunk: int = 1 << 20) -> None:
        if direct_threshold + 4 > staging_size:
            raise ValueError("direct_threshold must leave room for a whole small frame in the staging buffer")
        self._max_frame_size = max_frame_size
        self._direct = direct_threshold
        self._staging_size = staging_size
        self._first_chunk = max(first_chunk, staging_size)
        self._budget = budget
        self._pending = bytearray()  # bytes received, not yet part of a frame (never more than a small frame)
        # The large frame being received in place: its size, its chunks, and where the last one is filled to.
        self._size = -1
        self._chunks: list[bytearray] = []
        self._chunk_view = memoryview(b"")
        self._filled = 0
        self._received = 0
        self._held = 0  # bytes of the frame in progress taken from the budget
        self.blocked = False  # waiting for the budget: the caller stops reading and calls resume() later

    @property
    def buffered(self) -> int:
        """Bytes received that are not yet part of a returned frame."""
        return len(self._pending) + (self._received + 4 if self._size >= 0 else 0)

    @property
    def max_frame_size(self) -> int:
        return self._max_frame_size

    @max_frame_size.setter
    def max_frame_size(self, size: int) -> None:
        """Frames whose size prefix is read from now on are held to ``size`` (a SASL listener: small until the
        client authenticates)."""
        self._max_frame_size = size

    def get_buffer(self) -> memoryview:
        """Where the next received bytes go (never empty; not to be called while ``blocked``)."""
        if self._size >= 0:
            return self._chunk_view[self._filled:]
        staging = _staging(self._staging_size)
        pending = len(self._pending)
        staging[:pending] = self._pending
        return memoryview(staging)[pending : self._staging_size]

    def buffer_updated(self, nbytes: int) -> list[bytearray]:
        """``nbytes`` were written into the last ``get_buffer``; returns every frame now complete, in order."""
        if self._size >= 0:
            self._filled += nbytes
            self._received += nbytes
            if self._received == self._size:
                return [self._finish_frame()]
            if self._filled == len(self._chunks[-1]):
                self._next_chunk()
            return []
        staging = _staging(self._staging_size)
        data = memoryview(staging)[: len(self._pending) + nbytes]
        self._pending = bytearray()
        return self._split(data)

    def resume(self) -> list[bytearray]:
        """Try again after the budget freed room; returns the frames that completes."""
        if not self.blocked:
            return []
        self.blocked = False
        if self._size >= 0:
            self._next_chunk()
            return []
        pending, self._pending = self._pending, bytearray()
        return self._split(memoryview(pending))

    def discard(self) -> None:
        """The connection is closing: give back what the frame in progress holds."""
        if self._held:
            self._budget.release(self._held)
        self._held, self._size, self._chunks = 0, -1, []

    def _split(self, view: memoryview) -> list[bytearray]:
        frames: list[bytearray] = []
        try:
            return self._split_into(view, frames)
        except FrameTooLarge:
            self._budget.release(sum(len(f) for f in frames))  # the connection closes: they are never handled
            raise

    def _split_into(self, view: memoryview, frames: list[bytearray]) -> list[bytearray]:
        pos, end = 0, len(view)
        while end - pos >= 4:
            (size,) = _SIZE.unpack_from(view, pos)
            if size < 0 or size > self._max_frame_size:
                raise FrameTooLarge(
                    f"request size {size} is outside 0..{self._max_frame_size} (socket.request.max.bytes)", size
                )
            staged = end - pos - 4
            if staged >= size:  # whole in the read already: its bytes are in memory, so it is admitted
                self._budget.reserve(size, force=True)
                frames.append(bytearray(view[pos + 4 : pos + 4 + size]))
                pos += 4 + size
                continue
            if size <= self._direct or staged == 0:  # a large frame starts with its first byte, not its size
                break
            first = min(size, self._first_chunk)
            if not self._budget.reserve(first):
                self.blocked = True
                break
            chunk = bytearray(first)
            chunk[:staged] = view[pos + 4 : end]
            self._size, self._chunks, self._held = size, [chunk], first
            self._chunk_view, self._filled, self._received = memoryview(chunk), staged, staged
            pos = end
            break
        self._pending = bytearray(view[pos:end])
        return frames

    def _next_chunk(self) -> None:
        size = min(self._size - self._received, len(self._chunks[-1]) * 2)
        if not self._budget.reserve(size):
            self.blocked = True
            return
        chunk = bytearray(size)
        self._chunks.append(chunk)
        self._held += size
        self._chunk_view, self._filled = memoryview(chunk), 0

    def _finish_frame(self) -> bytearray:
        frame = self._chunks[0] if len(self._chunks) == 1 else bytearray().join(self._chunks)
        self._size, self._chunks, self._held = -1, [], 0
        self._chunk_view, self._filled, self._received = memoryview(b""), 0, 0
        return frame

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytearray]:
        """Add received bytes (a copy: for tests and callers without a ``BufferedProtocol``)."""
        frames: list[bytearray] = []
        source = memoryview(data)
        while len(source):
            if self.blocked:
                raise FrameError("the request memory budget is exhausted")
            target = self.get_buffer()
            n = min(len(target), len(source))
            target[:n] = source[:n]
            source = source[n:]
            frames += self.buffer_updated(n)
        return frames


def frame(payload: bytes | bytearray) -> bytes:
    return _SIZE.pack(len(payload)) + payload
