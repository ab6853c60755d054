"""The machine's own copy limit: file -> os.sendfile -> loopback TCP -> recv_into -> file.

Every benchmark divides umbra's throughput by this rate measured in the same run, because this
machine is shared and absolute figures are noise.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

MIB = 1024 * 1024


def loopback_copy(size_bytes: int, directory: Path, repeats: int = 3) -> tuple[float, int]:
    """(best seconds, bytes copied) over ``repeats`` copies of a ``size_bytes`` file of random bytes."""
    source, target = directory / "loopback-source.bin", directory / "loopback-target.bin"
    chunk = os.urandom(MIB)
    with open(source, "wb") as handle:
        for _ in range(max(1, size_bytes // MIB)):
            handle.write(chunk)
    size = source.stat().st_size
    try:
        return min(_copy_once(source, target, size) for _ in range(repeats)), size
    finally:
        source.unlink()
        target.unlink(missing_ok=True)


def loopback_copy_rate(size_bytes: int, directory: Path, repeats: int = 3) -> float:
    """MiB/s of the best of ``repeats`` copies."""
    seconds, size = loopback_copy(size_bytes, directory, repeats)
    return size / MIB / seconds


def _copy_once(source: Path, target: Path, size: int) -> float:
    received = 0

    def receive(server: socket.socket) -> None:
        nonlocal received
        connection, _ = server.accept()
        buffer = bytearray(MIB)
        view = memoryview(buffer)
        with connection, open(target, "wb") as out:
            while count := connection.recv_into(buffer):
                out.write(view[:count])
                received += count

    with socket.create_server(("127.0.0.1", 0)) as server:
        receiver = threading.Thread(target=receive, args=(server,), daemon=True)
        receiver.start()
        started = time.perf_counter()
        with socket.create_connection(server.getsockname()) as sender, open(source, "rb") as infile:
            offset = 0
            while offset < size:
                offset += os.sendfile(sender.fileno(), infile.fileno(), offset, size - offset)
        receiver.join(timeout=300)
        seconds = time.perf_counter() - started
    if receiver.is_alive() or received != size:
        raise RuntimeError(f"loopback copy: received {received} of {size} bytes")
    return seconds
