"""One TCP connection to one remote broker: ApiVersions handshake, pipelined requests, clean close.

Requests are written in the order they are sent and the remote answers in that order, so a single
reader task matches each response frame to the oldest pending request and checks its correlation id.
Any transport or framing failure fails every pending request and closes the connection: a byte
stream that lost its place cannot be resynchronised. A request that times out closes the connection
too, because its response may still arrive later and would be taken for another request's.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections import deque
from collections.abc import Mapping
from typing import Any

from kafka.protocol.api_message import ApiMessage

from umbra import __version__
from umbra.client import versions as api
from umbra.client.errors import (
    ClientConnectionError,
    ClientError,
    ClientProtocolError,
    ClientResponseError,
    ClientTimeout,
    UnsupportedApiError,
)
from umbra.client.messages import correlation_id_of, decode_response, encode_request
from umbra.client.settings import ConnectionSettings
from umbra.errors import ErrorCode
from umbra.protocol.codec import SCHEMAS, build_request

_SIZE = struct.Struct(">i")


class _Pending:
    __slots__ = ("correlation_id", "api_key", "version", "future")

    def __init__(self, correlation_id: int, api_key: int, version: int, future: asyncio.Future[bytes]) -> None:
        self.correlation_id = correlation_id
        self.api_key = api_key
        self.version = version
        self.future = future


class BrokerConnection:
    """A connection to ``host:port``. Call :meth:`connect` first (or use ``async with``)."""

    def __init__(self, host: str, port: int, settings: ConnectionSettings | None = None, *,
                 node_id: int | None = None) -> None:
        self.host = host
        self.port = port
        self.node_id = node_id
        self.settings = settings or ConnectionSettings()
        if self.settings.sasl is not None:
            raise ClientError("SASL towards a source cluster is not supported yet")
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._pending: deque[_Pending] = deque()
        self._next_correlation_id = 1
        self._failure: ClientError | None = None
        self._versions: dict[int, int] = {}
        self._remote_versions: dict[int, tuple[int, int]] = {}
        self._drain_lock = asyncio.Lock()

    def __repr__(self) -> str:
        state = "open" if self.connected else f"closed ({self._failure})" if self._failure else "new"
        return f"<BrokerConnection {self.host}:{self.port} node={self.node_id} {state}>"

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._writer is not None and self._failure is None

    async def connect(self) -> None:
        """Open the socket and negotiate API versions. Raises ClientConnectionError or ClientTimeout."""
        if self._writer is not None:
            raise ClientError(f"{self!r} was already connected; make a new connection to reconnect")
        try:
            async with asyncio.timeout(self.settings.connect_timeout_s):
                sock = await self._open_socket()
                ssl_context = self._ssl_context()
                self._reader, self._writer = await asyncio.open_connection(
                    sock=sock, limit=self.settings.read_buffer_bytes, ssl=ssl_context,
                    server_hostname=self.host if ssl_context else None)
        except TimeoutError:
            raise ClientTimeout(f"connect to {self.host}:{self.port} timed out after "
                                f"{self.settings.connect_timeout_s}s") from None
        except OSError as exc:
            raise ClientConnectionError(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        self._reader_task = asyncio.create_task(self._read_responses(), name=f"client-reader-{self.host}:{self.port}")
        try:
            await self._handshake()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Fail anything pending with ClientConnectionError, stop the reader and close the socket."""
        self._fail(ClientConnectionError(f"connection to {self.host}:{self.port} was closed"))
        task, self._reader_task = self._reader_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._writer is not None:
            with contextlib.suppress(OSError, ConnectionError):
                await self._writer.wait_closed()

    async def __aenter__(self) -> BrokerConnection:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _open_socket(self) -> socket.socket:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        last_error: OSError | None = None
        for family, sock_type, proto, _name, address in infos:
            sock = socket.socket(family, sock_type, proto)
            try:
                sock.setblocking(False)
                # Set before connect so that the TCP window scale is negotiated for them.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.settings.socket_buffer_bytes)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.settings.socket_buffer_bytes)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                await loop.sock_connect(sock, address)
                return sock
            except OSError as exc:
                sock.close()
                last_error = exc
            except BaseException:
                sock.close()
                raise
        raise last_error or OSError(f"no address found for {self.host}")

    def _ssl_context(self) -> Any:
        tls = self.settings.tls
        if tls is None:
            return None
        import ssl

        context = ssl.create_default_context(cafile=tls.ca_file)
        if tls.cert_file:
            context.load_cert_chain(tls.cert_file, tls.key_file)
        return context

    # -- versions --------------------------------------------------------------------------------

    async def _handshake(self) -> None:
        version = api.USABLE_VERSIONS[api.API_VERSIONS][1]
        fields = {"client_software_name": "umbra", "client_software_version": __version__}
        response = await self.request(api.API_VERSIONS, fields, version=version)
        if response.error_code == ErrorCode.UNSUPPORTED_VERSION:
            # The remote answered in v0 and listed what it supports: retry at the best common version.
            theirs = {k.api_key: k.max_version for k in response.api_keys}.get(api.API_VERSIONS, 0)
            response = await self.request(api.API_VERSIONS, fields, version=min(version, theirs))
        if response.error_code != 0:
            raise ClientResponseError(response.error_code, f"ApiVersions from {self.host}:{self.port}")
        self._remote_versions = {k.api_key: (k.min_version, k.max_version) for k in response.api_keys}
        self._versions = api.negotiate(self._remote_versions)

    @property
    def versions(self) -> Mapping[int, int]:
        """api_key -> the version this connection uses for it (only APIs both sides support)."""
        return dict(self._versions)

    def supports(self, api_key: int) -> bool:
        return api_key in self._versions

    def version(self, api_key: int) -> int:
        try:
            return self._versions[api_key]
        except KeyError:
            name = SCHEMAS[api_key].name if api_key in SCHEMAS else f"api key {api_key}"
            remote = self._remote_versions.get(api_key)
            raise UnsupportedApiError(
                f"{self.host}:{self.port} supports no usable version of {name} "
                f"(remote: {remote}, ours: {api.USABLE_VERSIONS.get(api_key)})") from None

    # -- requests --------------------------------------------------------------------------------

    async def request(self, api_key: int, fields: dict[str, Any] | ApiMessage, *, version: int | None = None,
                      timeout: float | None = None) -> Any:
        """Send one request and return the decoded response object (a kafka-python message)."""
        version = self.version(api_key) if version is None else version
        frame = await self.request_frame(api_key, fields, version=version, timeout=timeout)
        return decode_response(api_key, version, frame)

    async def request_frame(self, api_key: int, fields: dict[str, Any] | ApiMessage, *, version: int,
                            timeout: float | None = None) -> bytes:
        """Send one request and return its raw response frame (header included, size prefix excluded)."""
        future = self._send(api_key, version, fields)
        if self._writer is not None and self._writer.transport.get_write_buffer_size() > 0:
            async with self._drain_lock:
                try:
                    await self._writer.drain()
                except (OSError, ConnectionError) as exc:
                    self._fail(ClientConnectionError(f"write to {self.host}:{self.port} failed: {exc}"))
        limit = self.settings.request_timeout_s if timeout is None else timeout
        try:
            async with asyncio.timeout(limit):
                return await future
        except TimeoutError:
            name = SCHEMAS[api_key].name
            error = ClientTimeout(f"{name} to {self.host}:{self.port} got no response within {limit:.1f}s")
            self._fail(error)
            raise error from None

    def _send(self, api_key: int, version: int, fields: dict[str, Any] | ApiMessage) -> asyncio.Future[bytes]:
        if self._failure is not None:
            raise type(self._failure)(str(self._failure))
        if self._writer is None:
            raise ClientConnectionError(f"{self!r} is not connected")
        correlation_id = self._next_correlation_id
        self._next_correlation_id = (correlation_id + 1) & 0x7FFFFFFF
        message = fields if isinstance(fields, ApiMessage) else build_request(api_key, version, fields)
        if message.API_VERSION != version:
            message.API_VERSION = version
        frame = encode_request(message, correlation_id, self.settings.client_id)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(correlation_id, api_key, version, future))
        self._writer.write(frame)
        return future

    async def _read_responses(self) -> None:
        assert self._reader is not None
        reader = self._reader
        max_size = self.settings.max_response_bytes
        error: ClientError
        try:
            while True:
                (size,) = _SIZE.unpack(await reader.readexactly(4))
                if size < 4 or size > max_size:
                    raise ClientProtocolError(f"response size {size} is outside 4..{max_size}")
                frame = await reader.readexactly(size)
                if not self._pending:
                    raise ClientProtocolError(f"unsolicited response (correlation id {correlation_id_of(frame)})")
                pending = self._pending[0]
                received = correlation_id_of(frame)
                if received != pending.correlation_id:
                    raise ClientProtocolError(f"response correlation id {received} does not match request "
                                              f"{pending.correlation_id}")
                self._pending.popleft()
                if not pending.future.done():
                    pending.future.set_result(frame)
        except asyncio.IncompleteReadError:
            error = ClientConnectionError(f"{self.host}:{self.port} closed the connection")
        except (OSError, ConnectionError) as exc:
            error = ClientConnectionError(f"connection to {self.host}:{self.port} failed: {exc}")
        except ClientError as exc:
            error = exc
        self._fail(error)

    def _fail(self, error: ClientError) -> None:
        """Move to the closed state once: fail every pending request with ``error``, close the transport."""
        if self._failure is None:
            self._failure = error
        while self._pending:
            future = self._pending.popleft().future
            if not future.done():
                future.set_exception(type(error)(str(error)))
                future.exception()  # a waiter that was cancelled will never retrieve it
        if self._writer is not None and not self._writer.is_closing():
            self._writer.close()
