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
import logging
import socket
import struct
import sys
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
from umbra.client.sasl import authenticate
from umbra.client.settings import ConnectionSettings
from umbra.errors import ErrorCode
from umbra.protocol.codec import SCHEMAS, build_request

_SIZE = struct.Struct(">i")
log = logging.getLogger("umbra.client")


class _BufferPool:
    """Large receive buffers, reused once nothing refers to them any more.

    A fresh 50 MB ``bytearray`` costs ~13,000 page faults plus a memset, which profiling showed to be a
    quarter of the replication path's CPU. A pooled buffer is reused when its reference count says that no
    frame or memoryview still uses it (CPython reference counting; memoryviews hold their exporter).
    """

    MIN_POOLED = 1024 * 1024
    MAX_BUFFERS = 8  # one per fetch session in flight (MAX_FETCHES_IN_FLIGHT), so none pays fresh page faults
    MAX_POOLED_BYTES = 160 * 1024 * 1024  # and never more than this kept, whatever the responses' sizes

    def __init__(self) -> None:
        self._buffers: list[bytearray] = []

    def take(self, size: int) -> memoryview:
        if size < self.MIN_POOLED:
            return memoryview(bytearray(size))
        for buffer in self._buffers:
            # Referenced by the list, the loop variable and getrefcount's argument: nothing else.
            if len(buffer) >= size and sys.getrefcount(buffer) <= 3:
                return memoryview(buffer)[:size]
        # Rounded up to a power of two, so that the next frame of a similar size fits the same buffer.
        buffer = bytearray(1 << (size - 1).bit_length())
        log.debug("receive buffer pool: new %d-byte buffer for a %d-byte frame (%d pooled, in use: %s)", len(buffer),
                  size, len(self._buffers), [sys.getrefcount(b) - 2 for b in self._buffers])
        if len(self._buffers) < self.MAX_BUFFERS \
                and sum(map(len, self._buffers)) + len(buffer) <= self.MAX_POOLED_BYTES:
            self._buffers.append(buffer)
        else:
            smallest = min(range(len(self._buffers)), key=lambda i: len(self._buffers[i]))
            pooled = sum(map(len, self._buffers)) - len(self._buffers[smallest]) + len(buffer)
            if sys.getrefcount(self._buffers[smallest]) <= 2 and len(self._buffers[smallest]) < size \
                    and pooled <= self.MAX_POOLED_BYTES:
                self._buffers[smallest] = buffer
        return memoryview(buffer)[:size]


class _FrameProtocol(asyncio.BufferedProtocol):
    """Reads size-prefixed response frames straight into a buffer of their own size (no stream copies).

    Each frame is a writable memoryview (over a pooled buffer for large frames), so the replication path
    can stamp batch headers in place instead of copying the record set once more.
    """

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.transport: asyncio.Transport | None = None
        self.frames: deque[memoryview] = deque()
        self._pool = _BufferPool()
        self.error: BaseException | None = None
        self.closed = False
        self.wakeup = asyncio.Event()
        self.can_write = asyncio.Event()
        self.can_write.set()
        self._size = bytearray(4)
        self._frame: memoryview | None = None
        self._filled = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._frame is None:
            return memoryview(self._size)[self._filled:]
        return self._frame[self._filled:]

    def buffer_updated(self, nbytes: int) -> None:
        self._filled += nbytes
        if self._frame is None:
            if self._filled < 4:
                return
            (size,) = _SIZE.unpack(self._size)
            if size < 4 or size > self.max_size:
                self.error = ClientProtocolError(f"response size {size} is outside 4..{self.max_size}")
                self.wakeup.set()
                if self.transport is not None:
                    self.transport.close()
                return
            self._frame, self._filled = self._pool.take(size), 0
            return
        if self._filled == len(self._frame):
            self.frames.append(self._frame)
            self._frame, self._filled = None, 0
            self.wakeup.set()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if exc is not None and self.error is None:
            self.error = exc
        self.can_write.set()
        self.wakeup.set()

    def pause_writing(self) -> None:
        self.can_write.clear()

    def resume_writing(self) -> None:
        self.can_write.set()


class _Pending:
    __slots__ = ("correlation_id", "api_key", "version", "future")

    def __init__(self, correlation_id: int, api_key: int, version: int, future: asyncio.Future[memoryview]) -> None:
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
        self._protocol: _FrameProtocol | None = None
        self._transport: asyncio.Transport | None = None
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
        return self._transport is not None and self._failure is None

    async def connect(self) -> None:
        """Open the socket and negotiate API versions. Raises ClientConnectionError or ClientTimeout."""
        if self._transport is not None:
            raise ClientError(f"{self!r} was already connected; make a new connection to reconnect")
        try:
            async with asyncio.timeout(self.settings.connect_timeout_s):
                sock = await self._open_socket()
                ssl_context = self._ssl_context()
                max_size = self.settings.max_response_bytes
                transport, protocol = await asyncio.get_running_loop().create_connection(
                    lambda: _FrameProtocol(max_size), sock=sock, ssl=ssl_context,
                    server_hostname=self.host if ssl_context else None)
                self._transport, self._protocol = transport, protocol
        except TimeoutError:
            raise ClientTimeout(f"connect to {self.host}:{self.port} timed out after "
                                f"{self.settings.connect_timeout_s}s") from None
        except OSError as exc:
            raise ClientConnectionError(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        self._reader_task = asyncio.create_task(self._read_responses(), name=f"client-reader-{self.host}:{self.port}")
        try:
            await self._handshake()
            if self.settings.sasl is not None:
                await authenticate(self, self.settings.sasl)
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
        if self._transport is not None:
            self._transport.close()

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

        try:
            context = ssl.create_default_context(cafile=tls.ca_file)
            context.check_hostname = tls.verify_hostname
            if tls.cert_file:
                context.load_cert_chain(tls.cert_file, tls.key_file)
        except (OSError, ssl.SSLError) as exc:  # a missing or unreadable file, a key that does not match
            raise ClientError(f"source.tls: cannot load the CA, certificate or key: {exc}") from None
        return context

    # -- versions --------------------------------------------------------------------------------

    async def _handshake(self) -> None:
        """ApiVersions at our highest version; on UNSUPPORTED_VERSION, again at the one the remote names.

        The versions tried strictly decrease, ending at v0 at the latest, so this always terminates.
        """
        version = api.USABLE_VERSIONS[api.API_VERSIONS][1]
        fields = {"client_software_name": "umbra", "client_software_version": __version__}
        while True:
            frame = await self.request_frame(api.API_VERSIONS, fields, version=version)
            body = memoryview(frame)[4:]  # ApiVersions responses always have a v0 header (KIP-511)
            try:
                error = api.api_versions_error(body)
            except ValueError as exc:
                raise ClientProtocolError(f"ApiVersions from {self.host}:{self.port}: {exc}") from None
            if error == ErrorCode.UNSUPPORTED_VERSION and version > 0:
                named = api.named_api_versions_max(body)
                retry = named if named is not None and named < version else 0
                log.debug("%s:%d does not support ApiVersions v%d; retrying at v%d", self.host, self.port, version,
                          retry)
                version = retry
                continue
            response = decode_response(api.API_VERSIONS, version, frame)
            break
        if response.error_code != 0:
            raise ClientResponseError(response.error_code, f"ApiVersions v{version} from {self.host}:{self.port}")
        self._remote_versions = {k.api_key: (k.min_version, k.max_version) for k in response.api_keys}
        self._versions = api.negotiate(self._remote_versions)

    @property
    def remote_versions(self) -> Mapping[int, tuple[int, int]]:
        """api_key -> (lowest, highest) version the remote advertised, for every API it listed."""
        return dict(self._remote_versions)

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
                            timeout: float | None = None) -> memoryview:
        """Send one request and return its raw response frame (header included, size prefix excluded)."""
        future = self._send(api_key, version, fields)
        if self._protocol is not None and not self._protocol.can_write.is_set():
            async with self._drain_lock:
                await self._protocol.can_write.wait()
        limit = self.settings.request_timeout_s if timeout is None else timeout
        try:
            async with asyncio.timeout(limit):
                return await future
        except TimeoutError:
            name = SCHEMAS[api_key].name
            error = ClientTimeout(f"{name} to {self.host}:{self.port} got no response within {limit:.1f}s")
            self._fail(error)
            raise error from None

    def _send(self, api_key: int, version: int, fields: dict[str, Any] | ApiMessage) -> asyncio.Future[memoryview]:
        if self._failure is not None:
            raise type(self._failure)(str(self._failure))
        if self._transport is None:
            raise ClientConnectionError(f"{self!r} is not connected")
        if self._transport.is_closing():  # the remote closed it before the reader task saw it
            error = ClientConnectionError(f"{self.host}:{self.port} closed the connection")
            self._fail(error)
            raise error
        correlation_id = self._next_correlation_id
        self._next_correlation_id = (correlation_id + 1) & 0x7FFFFFFF
        message = fields if isinstance(fields, ApiMessage) else build_request(api_key, version, fields)
        if message.API_VERSION != version:
            message.API_VERSION = version
        frame = encode_request(message, correlation_id, self.settings.client_id)
        future: asyncio.Future[memoryview] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(correlation_id, api_key, version, future))
        self._transport.write(frame)
        return future

    async def _read_responses(self) -> None:
        protocol = self._protocol
        assert protocol is not None
        error: ClientError
        try:
            while True:
                if not protocol.frames:
                    if protocol.error is not None or protocol.closed:
                        break
                    protocol.wakeup.clear()
                    await protocol.wakeup.wait()
                    continue
                frame = protocol.frames.popleft()
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
            if isinstance(protocol.error, ClientError):
                error = protocol.error
            elif protocol.error is not None:
                error = ClientConnectionError(f"connection to {self.host}:{self.port} failed: {protocol.error}")
            else:
                error = ClientConnectionError(f"{self.host}:{self.port} closed the connection")
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
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()
