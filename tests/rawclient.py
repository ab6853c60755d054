"""A blocking raw Kafka connection for tests: send any request object, read its response.

It uses kafka-python's schema classes (the same codec the broker uses) so that tests
can send exactly the bytes they mean, including pipelined and malformed requests.
"""

from __future__ import annotations

import itertools
import socket
import struct
from typing import Any

from umbra.protocol.codec import SCHEMAS


class RawConnection:
    def __init__(self, host: str, port: int, timeout: float = 10) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self._ids = itertools.count(1)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def encode(self, api_key: int, version: int, correlation_id: int | None = None, **fields: Any) -> tuple[int, bytes]:
        request = SCHEMAS[api_key].request[version](**fields)
        cid = next(self._ids) if correlation_id is None else correlation_id
        request.with_header(correlation_id=cid, client_id="raw-test")
        return cid, bytes(request.encode(header=True, framed=True))

    def send(self, api_key: int, version: int, **fields: Any) -> int:
        cid, frame = self.encode(api_key, version, **fields)
        self.sock.sendall(frame)
        return cid

    def read_frame(self) -> bytes:
        size = struct.unpack(">i", self._read(4))[0]
        return self._read(size)

    def receive(self, api_key: int, version: int) -> tuple[int, Any]:
        frame = self.read_frame()
        response = SCHEMAS[api_key].response.decode(frame, version=version, header=True)
        return response.header.correlation_id, response

    def request(self, api_key: int, version: int, **fields: Any) -> Any:
        cid = self.send(api_key, version, **fields)
        got, response = self.receive(api_key, version)
        assert got == cid
        return response

    def _read(self, n: int) -> bytes:
        data = bytearray(n)
        view = memoryview(data)
        got = 0
        while got < n:
            count = self.sock.recv_into(view[got:])
            if not count:
                raise ConnectionError("connection closed by the broker")
            got += count
        return bytes(data)


def error_codes(value: Any) -> set[int]:
    """Every ``*error_code`` in a decoded response (``to_dict()``), at any depth."""
    if isinstance(value, dict):
        found = {v for k, v in value.items() if k.endswith("error_code") and isinstance(v, int)}
        return found.union(*(error_codes(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(error_codes(v) for v in value))
    return set()
