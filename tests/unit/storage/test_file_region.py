"""FileRegion reads: the same whole-batch cuts as the pread path, fds owned and closed, and the connection's
direct sender (writev + sendfile on a non-blocking socket, with its fallbacks)."""

from __future__ import annotations

import errno
import os
import random
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import umbra.storage.segment as segment_module
from umbra.records.batch import iter_batch_headers
from umbra.records.records import build_batch
from umbra.server.sendfile import DirectSender
from umbra.storage.config import LogConfig
from umbra.storage.log import Log
from umbra.storage.region import FileRegion, RegionTruncated, close_regions, record_set_size
from umbra.storage.segment import SENDFILE_MIN_BYTES


def _batch(count: int, size: int, seed: int) -> bytes:
    rng = random.Random(seed)
    return build_batch([(b"k%d" % i, rng.randbytes(size), [], 1_000 + i) for i in range(count)])


def _fill(log: Log, sizes: list[tuple[int, int]]) -> None:
    for seed, (count, size) in enumerate(sizes):
        log.append_as_leader(_batch(count, size, seed), leader_epoch=0, now_ms=10_000)
    log.high_watermark = log.log_end_offset


def _materialize(data: object) -> bytes:
    parts = data if isinstance(data, list) else [data]
    return b"".join(part.read() if isinstance(part, FileRegion) else bytes(part) for part in parts)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def log(tmp_path: Path) -> Iterator[Log]:
    opened = Log.open(tmp_path / "t-0", "t", 0, LogConfig())
    # small and large batches: cuts fall on both kinds, and the oversized-first rule gets exercised
    _fill(opened, [(20, 100), (1, 300_000), (50, 1_000), (3, 200_000), (1, 700_000), (200, 50), (2, 100_000)])
    yield opened
    opened.close()


@pytest.fixture(params=["default-threshold", "every-read-a-region"])
def threshold(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    if request.param == "every-read-a-region":
        monkeypatch.setattr(segment_module, "SENDFILE_MIN_BYTES", 1)
        return 1
    return SENDFILE_MIN_BYTES


def test_region_cuts_equal_pread_cuts(log: Log, threshold: int) -> None:
    segment = log._segments[0]
    headers = list(segment.scan(check_crc=False))
    positions = [h.position for h in headers] + [segment.size]
    offsets = [None, 0] + [h.base_offset for h in headers] + [h.last_offset for h in headers] + [log.log_end_offset]
    byte_limits = [0, 1, 60, 61, 62, 100, 4096, 65_536, 262_143, 262_144, 300_000, 300_062, 500_000, 1 << 20,
                   1_300_000, 4 << 20, segment.size]
    regions = 0
    fds = _open_fds()
    for position in positions:
        for max_bytes in byte_limits:
            for max_offset in offsets:
                for oversized in (False, True):
                    expected, expected_stop = segment.read_batches(position, max_bytes, max_offset, oversized)
                    got, stop = segment.read_batches(position, max_bytes, max_offset, oversized, regions_ok=True)
                    try:
                        where = (position, max_bytes, max_offset, oversized)
                        assert stop == expected_stop, where
                        assert len(got) == len(expected), where
                        assert _materialize(got) == bytes(expected), where
                        if isinstance(got, FileRegion):
                            regions += 1
                            assert len(got) >= threshold
                        else:
                            assert len(got) < threshold or max_bytes < threshold, where
                    finally:
                        close_regions(got)
    assert regions > 100
    assert _open_fds() == fds


def test_oversized_first_batch_is_one_region(log: Log) -> None:
    segment = log._segments[0]
    big = next(h for h in segment.scan(check_crc=False) if h.size_in_bytes > 600_000)
    data, stop = segment.read_batches(big.position, 1000, None, True, regions_ok=True)
    try:
        assert isinstance(data, FileRegion) and stop
        assert (data.offset, len(data)) == (big.position, big.size_in_bytes)
        assert [h.base_offset for h in iter_batch_headers(data.read())] == [big.base_offset]
    finally:
        data.close()
    empty, stop = segment.read_batches(big.position, 1000, None, False, regions_ok=True)
    assert (bytes(empty), stop) == (b"", True)
    empty, stop = segment.read_batches(big.position, 1000, big.base_offset, True, regions_ok=True)
    assert (bytes(empty), stop) == (b"", True)


def test_log_read_across_segments(tmp_path: Path) -> None:
    log = Log.open(tmp_path / "t-0", "t", 0, LogConfig(segment_bytes=1_000_000))
    try:
        _fill(log, [(1, 300_000), (1, 400_000), (1, 500_000), (10, 30_000), (1, 600_000), (3, 1_000)])
        assert log.segment_count >= 3
        for offset in range(log.log_end_offset):
            for max_bytes in (0, 100_000, 300_100, 800_000, 1_500_000, 10 << 20):
                expected = log.read(offset, max_bytes, max_offset=log.high_watermark)
                got = log.read(offset, max_bytes, max_offset=log.high_watermark, regions_ok=True)
                try:
                    assert record_set_size(got) == len(expected)
                    assert _materialize(got) == bytes(expected)
                finally:
                    close_regions(got)
        got = log.read(0, 10 << 20, regions_ok=True)
        assert isinstance(got, list) and sum(isinstance(part, FileRegion) for part in got) >= 2
        close_regions(got)
        assert isinstance(log.read(0, 10 << 20), bytes)  # without regions_ok: bytes, as before
    finally:
        log.close()


def test_region_outlives_retention_and_reports_truncation(tmp_path: Path) -> None:
    log = Log.open(tmp_path / "t-0", "t", 0, LogConfig(segment_bytes=1_000_000, retention_bytes=0))
    try:
        _fill(log, [(1, 600_000), (1, 600_000), (1, 600_000)])
        expected = bytes(log.read(0, 10 << 20))
        region = log.read(0, 10 << 20, regions_ok=True)
        first = region[0] if isinstance(region, list) else region
        assert isinstance(first, FileRegion)
        assert log.enforce_retention(10_000) > 0 and log.log_start_offset > 0  # the first segment is gone
        assert first.read() == expected[: len(first)]
        close_regions(region)

        tail = log.read(log.log_start_offset, 10 << 20, regions_ok=True)
        assert isinstance(tail, FileRegion)
        log.truncate_to(log.log_start_offset)  # the file is cut under the region
        with pytest.raises(RegionTruncated):
            tail.read()
        tail.close()
        tail.close()  # idempotent
    finally:
        log.close()


# ---- the connection's direct sender ---------------------------------------------------------------------------


def _send_through_socket(pieces: list[object], sndbuf: int = 16_384) -> bytes:
    """Send ``pieces`` with a DirectSender over a socketpair while a slow reader drains it."""
    writer, reader = socket.socketpair()
    writer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    writer.setblocking(False)
    received = bytearray()

    def drain() -> None:
        while chunk := reader.recv(7_000):
            received.extend(chunk)

    thread = threading.Thread(target=drain)
    sender = DirectSender(writer.fileno(), list(pieces), threading.Event())
    try:
        # Nobody reads yet, so the socket fills up: the rest needs a worker's waits (the reader starts after,
        # or a fast reader on an idle core could take everything within the first step).
        assert not sender.step(0)
        thread.start()
        while not sender.step(1.0):
            pass
    finally:
        sender.close()
        writer.close()
        if thread.is_alive() or thread.ident is not None:
            thread.join(10)
        reader.close()
    assert all(piece.fd == -1 for piece in pieces if isinstance(piece, FileRegion))  # close() closed the regions
    return bytes(received)


@pytest.fixture
def data_file(tmp_path: Path) -> Iterator[tuple[int, bytes]]:
    content = random.Random(7).randbytes(3_000_000)
    path = tmp_path / "data"
    path.write_bytes(content)
    fd = os.open(path, os.O_RDONLY)
    yield fd, content
    os.close(fd)


def test_direct_sender_interleaves_bytes_and_regions(data_file: tuple[int, bytes]) -> None:
    fd, content = data_file
    pieces: list[object] = [b"head", memoryview(b"-one-"), FileRegion(fd, 10, 1_000_000), b"", b"mid",
                            FileRegion(fd, 2_000_000, 999_999), b"tail"]
    expected = b"head-one-" + content[10:1_000_010] + b"mid" + content[2_000_000:2_999_999] + b"tail"
    fds = _open_fds()
    assert _send_through_socket(pieces) == expected
    assert _open_fds() == fds - 2


def test_direct_sender_without_sendfile(data_file: tuple[int, bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    fd, content = data_file

    def unsupported(*args: object) -> int:
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(os, "sendfile", unsupported)
    pieces: list[object] = [b"h", FileRegion(fd, 5, 2_500_000), b"t"]
    assert _send_through_socket(pieces) == b"h" + content[5:2_500_005] + b"t"


def test_direct_sender_truncated_file(data_file: tuple[int, bytes]) -> None:
    fd, _ = data_file
    writer, reader = socket.socketpair()
    region = FileRegion(fd, 2_900_000, 200_000)  # the file ends 100_000 bytes early
    sender = DirectSender(writer.fileno(), [region], threading.Event())
    reader.setblocking(False)
    try:
        with pytest.raises(RegionTruncated):
            while True:
                try:
                    while reader.recv(1 << 20):
                        pass
                except BlockingIOError:
                    pass
                sender.step(0.05)
    finally:
        sender.close()
        writer.close()
        reader.close()


def test_direct_sender_stops_when_aborted(data_file: tuple[int, bytes]) -> None:
    fd, _ = data_file
    writer, reader = socket.socketpair()  # nobody reads: the socket stays full
    writer.setblocking(False)
    abort = threading.Event()
    sender = DirectSender(writer.fileno(), [FileRegion(fd, 0, 3_000_000)], abort)
    try:
        assert not sender.step(0.2)  # gives its worker slot back after the wait
        threading.Timer(0.2, abort.set).start()
        with pytest.raises(ConnectionAbortedError):
            sender.step(30)
    finally:
        sender.close()
        writer.close()
        reader.close()


def test_region_chunks_are_bounded_and_whole(data_file: tuple[int, bytes], tmp_path: Path) -> None:
    """A TLS connection reads a region in chunks (it cannot sendfile): each at most the chunk size, all of
    them the region's bytes; a file truncated under the region shows as RegionTruncated."""
    fd, content = data_file
    region = FileRegion(fd, 123, 1_000_001)
    try:
        chunks = list(region.chunks(65_536))
    finally:
        region.close()
    assert max(len(chunk) for chunk in chunks) == 65_536 and len(chunks) == 16
    assert b"".join(chunks) == content[123:1_000_124]
    with pytest.raises(ValueError):
        list(region.chunks(65_536))  # closed
    short = tmp_path / "short"
    short.write_bytes(content[:100_000])
    short_fd = os.open(short, os.O_RDONLY)
    beyond = FileRegion(short_fd, 0, 200_000)
    os.close(short_fd)
    try:
        with pytest.raises(RegionTruncated):
            list(beyond.chunks(65_536))
    finally:
        beyond.close()
