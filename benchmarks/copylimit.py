"""The machine's own copy limit: file -> os.sendfile -> loopback TCP -> recv_into -> file.

Every benchmark divides umbra's throughput by this rate measured in the same run, because this
machine is shared and absolute figures are noise.

Page-cache state matters as much as the copy itself on this machine. It is a VM whose balloon device
reports freed memory back to the host (virtio-balloon free page reporting), so the first write into a
page the guest has not used for a few seconds costs a host page fault: new data goes into the page cache
at about 0.4-0.5 GB/s, against 1-5 GB/s into pages freed a moment ago (``page_cache_write_rates``
prints both). The raw copy takes the best of three repeats, each writing over the file the one before
freed, so it runs on recently freed pages. To compare like with like, every benchmark calls
``warm_page_cache`` with the case's size right before each measured case (``--cold`` turns it off).
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


def warm_page_cache(directory: Path, size_bytes: int) -> None:
    """Write and delete a scratch file of ``size_bytes``: the next writes into the page cache reuse the
    pages it freed, as the raw copy's repeats do (see the module docstring)."""
    scratch = directory / "page-cache-warm-up.bin"
    chunk = bytes(MIB)
    try:
        with open(scratch, "wb", buffering=0) as handle:
            for _ in range(max(1, size_bytes // MIB)):
                handle.write(chunk)
    finally:
        scratch.unlink(missing_ok=True)


def page_cache_write_rates(directory: Path, size_bytes: int) -> tuple[float, float]:
    """MiB/s of ``os.write`` of new data into the page cache: (first write of a new file, the same
    write again right after deleting it). Printed by the benchmarks so the machine's state is on record."""
    path = directory / "page-cache-rate.bin"
    chunk = os.urandom(MIB)
    chunks = max(1, size_bytes // MIB)
    rates = []
    try:
        for _ in range(2):
            started = time.perf_counter()
            with open(path, "wb", buffering=0) as handle:
                for _ in range(chunks):
                    handle.write(chunk)
            rates.append(chunks / (time.perf_counter() - started))
            path.unlink()
    finally:
        path.unlink(missing_ok=True)
    return rates[0], rates[1]


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
