"""Writing a response that holds ``FileRegion``s straight to the socket: byte pieces with ``os.writev``,
regions with ``os.sendfile``, so a Fetch's record sets go from the page cache to the socket without passing
through Python. Used by :mod:`umbra.server.connection` when the transport's buffer is empty.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from umbra.storage.region import FileRegion, RegionTruncated, close_regions

log = logging.getLogger("umbra.connection")

# A sendfile worker gives its slot back after waiting this long for a full socket, so stalled readers
# take turns with the others; it checks every _POLL_SLICE_MS whether the connection was closed.
_SENDFILE_WORKERS = 4
THREAD_WAIT_SECONDS = 1.0
_POLL_SLICE_MS = 100
_IOV_MAX = 512
_FALLBACK_CHUNK = 1024 * 1024
# sendfile cannot serve this fd pair (e.g. a file system without splice support): read and write instead.
_SENDFILE_UNSUPPORTED = {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP}
_sendfile_executor: ThreadPoolExecutor | None = None


def shutdown_executor() -> None:
    """Let the worker threads go (broker shutdown); a later send starts a new pool."""
    global _sendfile_executor
    if _sendfile_executor is not None:
        _sendfile_executor.shutdown(wait=False, cancel_futures=True)
        _sendfile_executor = None


def executor() -> ThreadPoolExecutor:
    global _sendfile_executor
    if _sendfile_executor is None:
        _sendfile_executor = ThreadPoolExecutor(_SENDFILE_WORKERS, thread_name_prefix="umbra-sendfile")
    return _sendfile_executor


class DirectSender:
    """Writes one response's pieces to a non-blocking socket, resuming where it stopped.

    It owns a duplicate of the socket fd (the transport may close its own while a worker sends) and the
    response's regions: :meth:`close` closes them all, once no thread is using them."""

    def __init__(self, sock_fd: int, pieces: list[Any], abort: threading.Event) -> None:
        self._fd = os.dup(sock_fd)
        self._pieces = pieces
        self._abort = abort
        self._index = 0
        self._offset = 0  # bytes of pieces[_index] already sent
        self._sendfile = True
        self.sendfile_bytes = 0  # sent with sendfile and not yet counted in the metric

    def step(self, wait_seconds: float) -> bool:
        """Send until done (True) or until the socket stays full for ``wait_seconds`` (False)."""
        while self._index < len(self._pieces):
            if self._abort.is_set():
                raise ConnectionAbortedError("the connection closed while a response was being sent")
            try:
                if isinstance(self._pieces[self._index], FileRegion):
                    self._send_region(self._pieces[self._index])
                else:
                    self._write_buffers()
            except BlockingIOError:
                if wait_seconds <= 0 or not self._wait_writable(wait_seconds):
                    return False
        return True

    def _advance(self, sent: int, length: int) -> None:
        self._offset += sent
        if self._offset >= length:
            self._index += 1
            self._offset = 0

    def _send_region(self, region: FileRegion) -> None:
        position = region.offset + self._offset
        remaining = region.length - self._offset
        if self._sendfile:
            try:
                sent = os.sendfile(self._fd, region.fd, position, remaining)
            except OSError as exc:
                if exc.errno not in _SENDFILE_UNSUPPORTED:
                    raise
                log.info("sendfile unsupported (%s); copying through Python", exc)
                self._sendfile = False
                return
            if sent == 0:
                raise RegionTruncated(f"segment file ended {remaining} bytes before the region's end")
            self.sendfile_bytes += sent
        else:
            data = os.pread(region.fd, min(remaining, _FALLBACK_CHUNK), position)
            if not data:
                raise RegionTruncated(f"segment file ended {remaining} bytes before the region's end")
            sent = os.write(self._fd, data)
        self._advance(sent, region.length)

    def _write_buffers(self) -> None:
        """One writev of the byte pieces up to the next region."""
        views: list[memoryview] = []
        for piece in self._pieces[self._index : self._index + _IOV_MAX]:
            if isinstance(piece, FileRegion):
                break
            views.append(memoryview(piece)[self._offset :] if not views else memoryview(piece))
        sent = os.writev(self._fd, views)
        for view in views:
            if sent < len(view):
                self._offset += sent
                return
            sent -= len(view)
            self._index += 1
            self._offset = 0

    def _wait_writable(self, wait_seconds: float) -> bool:
        deadline = time.monotonic() + wait_seconds
        poller = select.poll()
        poller.register(self._fd, select.POLLOUT)
        while not poller.poll(_POLL_SLICE_MS):
            if self._abort.is_set():
                raise ConnectionAbortedError("the connection closed while a response was being sent")
            if time.monotonic() >= deadline:
                return False
        return True  # writable, or an error the next write reports

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)
        close_regions(self._pieces)
