"""A tiny asyncio server speaking the Kafka protocol through ``umbra.protocol.codec``, for client tests.

A test gives it a handler ``(header, request) -> response fields | bytes | None``: a dict is encoded
as the response at the request's version, ``bytes`` are written to the socket verbatim (to send
broken frames), and ``None`` sends nothing (to test timeouts). ``hold`` pauses answering until set.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from umbra.protocol.codec import RequestHeader, build_response, decode_request, encode_response
from umbra.protocol.framing import FrameDecoder

Handler = Callable[[RequestHeader, Any], Any]

# What the fake advertises in ApiVersions, unless a test says otherwise.
DEFAULT_VERSIONS = {18: (0, 4), 3: (0, 12), 1: (4, 16), 2: (1, 10), 32: (0, 4)}


def api_versions_fields(versions: dict[int, tuple[int, int]]) -> dict[str, Any]:
    return {"error_code": 0, "throttle_time_ms": 0,
            "api_keys": [{"api_key": k, "min_version": lo, "max_version": hi} for k, (lo, hi) in versions.items()]}


class FakeBroker:
    def __init__(self, handler: Handler | None = None, versions: dict[int, tuple[int, int]] | None = None) -> None:
        self.handler = handler
        self.versions = dict(DEFAULT_VERSIONS if versions is None else versions)
        self.requests: list[tuple[RequestHeader, Any]] = []
        self.hold = asyncio.Event()
        self.hold.set()
        self.request_seen = asyncio.Event()
        self._server: asyncio.AbstractServer | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self.port = 0

    async def __aenter__(self) -> FakeBroker:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            await self._server.wait_closed()

    async def drop_connections(self) -> None:
        for writer in self._writers:
            writer.close()
        self._writers.clear()

    def respond(self, header: RequestHeader, request: Any) -> Any:
        if header.api_key == 18:
            return api_versions_fields(self.versions)
        if self.handler is None:
            raise AssertionError(f"unexpected api key {header.api_key}")
        return self.handler(header, request)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        decoder = FrameDecoder(1 << 30)
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                for frame in decoder.feed(data):
                    header, request = decode_request(frame)
                    self.requests.append((header, request))
                    self.request_seen.set()
                    await self.hold.wait()
                    answer = self.respond(header, request)
                    if answer is None:
                        continue
                    if isinstance(answer, bytes):
                        writer.write(answer)
                    else:
                        version = header.api_version
                        if header.api_key == 18:
                            version = min(version, 3)
                        body = build_response(header.api_key, version, answer)
                        writer.write(encode_response(header.api_key, version, header.correlation_id, body))
                    await writer.drain()
        writer.close()
