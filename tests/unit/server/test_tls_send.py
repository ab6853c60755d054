"""A response with record sets on a TLS connection: no sendfile (the bytes must be encrypted), so the regions
are read in chunks and written through the transport, each once it has drained; memory stays bounded by the
transport's high-water mark and a chunk, whatever the size of the fetch."""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from umbra.config import HostPort, ListenerConfig, SecurityProtocol, TlsSettings
from umbra.server.connection import _TLS_REGION_CHUNK, KafkaConnection
from umbra.server.memory import RequestMemoryPool
from umbra.storage.region import FileRegion

HIGH_WATER = 1 << 20


class FakeTlsTransport:
    """Takes writes like an SSL transport: pauses its protocol above the high-water mark, until drained."""

    def __init__(self, protocol: KafkaConnection) -> None:
        self.protocol = protocol
        self.received = bytearray()
        self.buffered = 0
        self.most_buffered = 0
        self.paused = asyncio.Event()

    def write(self, data: Any) -> None:
        self.received += data
        self.buffered += len(data)
        self.most_buffered = max(self.most_buffered, self.buffered)
        if self.buffered > HIGH_WATER and not self.paused.is_set():
            self.paused.set()
            self.protocol.pause_writing()

    def writelines(self, pieces: list[Any]) -> None:
        for piece in pieces:
            self.write(piece)

    def drain(self) -> None:
        self.buffered = 0
        self.paused.clear()
        self.protocol.resume_writing()


def tls_connection() -> KafkaConnection:
    listener = ListenerConfig("SSL", HostPort("127.0.0.1", 0), security_protocol=SecurityProtocol.SSL,
                              tls=TlsSettings(Path("cert.pem"), Path("key.pem")))
    broker = SimpleNamespace(config=SimpleNamespace(max_request_bytes=1 << 20, listeners=(listener,)),
                             request_memory=RequestMemoryPool(1 << 24))
    return KafkaConnection(broker, listener)  # type: ignore[arg-type]


def test_regions_go_through_the_transport_in_chunks_as_it_drains(tmp_path: Path) -> None:
    content = random.Random(3).randbytes(6_000_000)
    path = tmp_path / "segment"
    path.write_bytes(content)
    fd = os.open(path, os.O_RDONLY)
    try:
        regions = [FileRegion(fd, 100, 4_000_000), FileRegion(fd, 4_000_100, 1_500_000)]
    finally:
        os.close(fd)  # the regions hold their own duplicates
    pieces: list[Any] = [b"header", regions[0], b"between", regions[1], b"end"]

    async def send() -> FakeTlsTransport:
        connection = tls_connection()
        transport = FakeTlsTransport(connection)
        sending = asyncio.create_task(connection._write_pieces(transport, pieces))  # type: ignore[arg-type]
        drains = 0
        while not sending.done():
            paused = asyncio.create_task(transport.paused.wait())
            await asyncio.wait([sending, paused], return_when=asyncio.FIRST_COMPLETED)
            paused.cancel()
            if transport.paused.is_set():
                drains += 1
                transport.drain()
        await sending
        assert drains >= 4  # it waited for the transport, again and again
        return transport

    transport = asyncio.run(send())
    assert bytes(transport.received) == b"header" + content[100:4_000_100] + b"between" + \
        content[4_000_100:5_500_100] + b"end"
    assert transport.most_buffered <= HIGH_WATER + _TLS_REGION_CHUNK
    assert all(region.fd == -1 for region in regions)  # closed once sent
