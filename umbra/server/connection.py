"""One client connection: framing, pipelined requests handled in order, responses in order.

Requests on a connection are handled one after another, as Kafka does, so the
responses go out in request order. Reading pauses while too many requests are
queued, and handling waits while the socket's send buffer is full.

A response holding ``FileRegion``s (a Fetch with large record sets) is written
straight to the socket by a ``DirectSender`` when the transport's buffer is
empty: byte pieces with ``os.writev``, regions with ``os.sendfile``, on the
event loop until the socket is full and then on a worker thread that waits for
it to drain. Because responses leave one at a time, nothing else writes to the
transport meanwhile. Otherwise the regions are read and written as bytes; on a
TLS connection (its bytes are encrypted in Python, so sendfile cannot serve it)
in chunks, each written once the transport has drained below its high-water
mark, so a large fetch never sits in memory whole.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import ssl
import threading
from collections import deque
from typing import TYPE_CHECKING, Any, cast

from umbra.config import ListenerConfig
from umbra.errors import ErrorCode, KafkaError
from umbra.protocol.codec import (
    SCHEMAS,
    ProtocolDecodeError,
    RequestHeader,
    body_offset,
    build_response,
    decode_body,
    decode_header,
    encode_response,
    error_response,
)
from umbra.protocol.framing import FrameDecoder, FrameError, FrameTooLarge
from umbra.security.tls import client_went_away, describe_tls_error, principal_from_certificate
from umbra.server.handlers import ANONYMOUS, API_HANDLERS, RequestContext
from umbra.server.handlers.scram_users import current_users
from umbra.server.sasl import UNAUTHENTICATED_MAX_BYTES, SaslSession
from umbra.server.sendfile import THREAD_WAIT_SECONDS, DirectSender, executor
from umbra.storage.region import FileRegion, RegionTruncated, close_regions

if TYPE_CHECKING:
    from umbra.server.broker import Broker

log = logging.getLogger("umbra.connection")
_ids = itertools.count(1)
_MAX_QUEUED = 64
_WRITE_HIGH_WATER = 8 * 1024 * 1024
_TLS_REGION_CHUNK = 256 * 1024  # record-set bytes read from a segment per write on a TLS connection
_TLS_RECORD_PREFIX = 0x1603  # a TLS handshake record (type 22, version 3.x) read as a Kafka frame size

API_VERSIONS = 18

class KafkaConnection(asyncio.BufferedProtocol):
    def __init__(self, broker: Broker, listener: ListenerConfig | None = None) -> None:
        self.broker = broker
        # The listener it came in on: its protocol, its SASL mechanisms, and the addresses Metadata gives.
        self.listener = listener or broker.config.listeners[0]
        self.id = next(_ids)
        self.peer = "?"
        self.principal = ANONYMOUS  # until TLS (a client certificate) or SASL authenticates the client
        self._tls = self.listener.security_protocol.uses_tls
        self._memory = broker.request_memory
        self._frames = FrameDecoder(broker.config.max_request_bytes, budget=self._memory)
        self.sasl: SaslSession | None = None
        if self.listener.security_protocol.uses_sasl:
            self.sasl = SaslSession(self.listener.sasl_mechanisms, lambda: current_users(broker))
            self._frames.max_frame_size = UNAUTHENTICATED_MAX_BYTES  # a stranger's requests stay small
        self._ip: str | None = None  # counted in the broker's connection limits
        self._queue: deque[bytearray] = deque()
        self._wakeup = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._transport: asyncio.Transport | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._paused = False
        self._abort_send = threading.Event()  # tells a sendfile worker to stop: the connection is closing

    # --- asyncio.Protocol --------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = stream = cast(asyncio.Transport, transport)  # uvloop's TCPTransport
        peer = stream.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        if self._tls:  # counted in the connection limits by the listener since its accept (TlsAcceptor)
            self._authenticate_certificate(stream)
        else:
            ip = peer[0] if peer else "?"
            if not self.broker.connection_limits.admit(ip):
                self._closing = True
                stream.abort()
                return
            self._ip = ip
        stream.set_write_buffer_limits(high=_WRITE_HIGH_WATER)
        self._task = self.broker.spawn_connection_task(self._run(), self)

    def _authenticate_certificate(self, stream: asyncio.Transport) -> None:
        """mTLS: the client certificate (verified in the handshake) names the principal."""
        principal = principal_from_certificate(stream.get_extra_info("peercert"))
        if principal is not None:
            self.principal = principal
        ssl_object = stream.get_extra_info("ssl_object")
        version = ssl_object.version() if ssl_object is not None else "TLS"
        log.debug("connection %s on listener %s: %s, principal %s", self.peer, self.listener.name, version,
                  self.principal)

    def get_buffer(self, sizehint: int) -> memoryview:
        # The kernel writes straight into the decoder's buffers: a large request (Produce) lands once,
        # in the bytearray its record batches are stamped in and written to the log from.
        return self._frames.get_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        if self._closing:
            return
        try:
            frames = self._frames.buffer_updated(nbytes)
        except FrameTooLarge as exc:
            hint = ""
            if not self._tls and exc.size >> 16 == _TLS_RECORD_PREFIX:
                hint = f"; it began a TLS handshake on {self.listener.security_protocol} listener {self.listener.name}"
            log.warning("closing connection %s: %s%s", self.peer, exc, hint)
            self.close()
            return
        except FrameError as exc:
            log.warning("closing connection %s: %s", self.peer, exc)
            self.close()
            return
        self._take(frames)

    def _take(self, frames: list[bytearray]) -> None:
        if frames:
            self._queue.extend(frames)
            self._wakeup.set()
        if self._frames.blocked:  # no room in the request memory pool: read on once requests are handled
            self._pause()
            self._memory.wait(self._memory_available)
        elif len(self._queue) >= _MAX_QUEUED:
            self._pause()

    def _pause(self) -> None:
        if not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()

    def _resume(self) -> None:
        if self._paused and not self._frames.blocked and len(self._queue) < _MAX_QUEUED // 2 \
                and self._transport is not None and not self._closing:
            self._paused = False
            self._transport.resume_reading()

    def _memory_available(self) -> None:
        if self._closing:
            return
        try:
            self._take(self._frames.resume())
        except FrameError as exc:
            log.warning("closing connection %s: %s", self.peer, exc)
            self.close()
            return
        self._resume()

    def connection_lost(self, exc: Exception | None) -> None:
        if isinstance(exc, ssl.SSLError):  # a TLS connection broken after its handshake (a bad record, an alert)
            log.log(logging.DEBUG if client_went_away(exc) else logging.WARNING, "closing connection %s on listener %s:"
                    " TLS error: %s", self.peer, self.listener.name, describe_tls_error(exc))
        self._closing = True
        self._abort_send.set()
        self._drained.set()
        self._wakeup.set()
        self._memory.forget(self._memory_available)
        self._frames.discard()
        self._memory.release(sum(len(frame) for frame in self._queue))
        self._queue.clear()
        if self._ip is not None:
            self.broker.connection_limits.leave(self._ip)
            self._ip = None

    def pause_writing(self) -> None:
        self._drained.clear()

    def resume_writing(self) -> None:
        self._drained.set()

    # --- request loop ------------------------------------------------
    def close(self) -> None:
        self._closing = True
        self._abort_send.set()
        self._wakeup.set()
        if self._transport is not None:
            self._transport.close()

    async def _run(self) -> None:
        try:
            while not self._closing:
                if not self._queue:
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                frame = self._queue.popleft()
                self._resume()
                try:
                    response = await self._handle_frame(frame)
                finally:
                    self._memory.release(len(frame))
                if response is None:
                    continue
                if self._closing or self._transport is None:
                    close_regions(response)
                    continue
                if isinstance(response, list):
                    await self._write_pieces(self._transport, response)
                else:
                    self._transport.write(response)
                if self.sasl is not None and not self._sasl_settled():
                    self.close()  # a failed or out-of-order SASL exchange: the answer is flushed, then closed
                    break
                if not self._drained.is_set():
                    await self._drained.wait()
        finally:
            self.close()

    def _sasl_settled(self) -> bool:
        """After a response: False if the SASL exchange failed; on success the principal is its user's."""
        assert self.sasl is not None
        if self.sasl.failed:
            return False
        if self.sasl.authenticated and self.principal != f"User:{self.sasl.username}":
            self.principal = f"User:{self.sasl.username}"
            self._frames.max_frame_size = self.broker.config.max_request_bytes
        return True

    # --- responses with file regions -----------------------------------
    async def _write_pieces(self, transport: asyncio.Transport, pieces: list[Any]) -> None:
        """Write a pre-framed response; every FileRegion in it is closed (or owned by a worker that will
        close it) when this returns or raises."""
        if not any(isinstance(piece, FileRegion) for piece in pieces):
            transport.writelines(pieces)
            return
        owned = True  # False once a DirectSender owns the regions
        try:
            if self._tls:
                await self._write_through_tls(transport, pieces)
                return
            sock_fd = self._direct_send_fd(transport)
            if sock_fd is None:
                transport.writelines([piece.read() if isinstance(piece, FileRegion) else piece for piece in pieces])
                return
            sender = DirectSender(sock_fd, pieces, self._abort_send)
            owned = False
            await self._send_direct(sender)
        except RegionTruncated as exc:
            # The frame's length is already promised (and maybe partly sent): the client must reconnect.
            log.warning("closing connection %s: a fetched segment was truncated while being sent: %s", self.peer, exc)
            self.close()
        except OSError as exc:
            if not self._closing:
                log.info("closing connection %s: sending a response failed: %s", self.peer, exc)
            self.close()
        finally:
            if owned:
                close_regions(pieces)

    async def _write_through_tls(self, transport: asyncio.Transport, pieces: list[Any]) -> None:
        """The pieces through the TLS transport, regions read in chunks as the transport drains (at most the
        high-water mark and a chunk in memory); the caller closes the regions."""
        for piece in pieces:
            if not isinstance(piece, FileRegion):
                transport.write(piece)
                continue
            for chunk in piece.chunks(_TLS_REGION_CHUNK):
                if self._closing:
                    raise ConnectionAbortedError("the connection closed while a response was being sent")
                transport.write(chunk)
                if not self._drained.is_set():
                    await self._drained.wait()

    @staticmethod
    def _direct_send_fd(transport: asyncio.Transport) -> int | None:
        """The socket fd, when nothing is queued in the transport (so writing past it keeps the byte order)."""
        if transport.is_closing() or transport.get_write_buffer_size() != 0:
            return None
        if transport.get_extra_info("sslcontext") is not None:
            return None
        sock = transport.get_extra_info("socket")
        fd = sock.fileno() if sock is not None else -1
        return fd if fd >= 0 else None

    async def _send_direct(self, sender: DirectSender) -> None:
        """Run ``sender`` to the end, then close it (or leave that to a worker still using its fds)."""
        metric = self.broker.metrics.fetch_sendfile_bytes
        handed_off = False
        try:
            done = sender.step(0)  # on the loop, while the socket has room
            while not done:
                future = executor().submit(sender.step, THREAD_WAIT_SECONDS)
                try:
                    done = await asyncio.wrap_future(future)
                except asyncio.CancelledError:
                    # The worker may still be in sendfile with our fds: it closes them when it returns.
                    self._abort_send.set()
                    future.add_done_callback(lambda _: sender.close())
                    handed_off = True
                    raise
                finally:
                    metric.inc(sender.sendfile_bytes)
                    sender.sendfile_bytes = 0
        finally:
            if not handed_off:
                metric.inc(sender.sendfile_bytes)
                sender.close()

    async def _handle_frame(self, frame: bytearray) -> bytes | list[Any] | None:
        try:
            header, pos = decode_header(frame)
        except ProtocolDecodeError as exc:
            log.warning("closing connection %s: %s", self.peer, exc)
            self.close()
            return None
        handler = API_HANDLERS.get(header.api_key)
        if handler is None:
            log.warning("closing connection %s: unknown api key %d", self.peer, header.api_key)
            self.close()
            return None
        if self.sasl is not None and not self.sasl.allows(header.api_key):
            log.warning("closing connection %s on listener %s: %s before SASL authentication", self.peer,
                        self.listener.name, handler.name)
            self.close()
            return None
        if not handler.min_version <= header.api_version <= handler.max_version:
            return self._unsupported_version(header, handler.name)
        schema = SCHEMAS[header.api_key]
        try:
            body = decode_body(schema, header, frame, body_offset(frame, header, pos))
        except ProtocolDecodeError as exc:
            log.warning("closing connection %s: %s", self.peer, exc)
            self.close()
            return None
        ctx = RequestContext(self.broker, header, self.peer, self.id, self.principal, self.listener.name, self.sasl)
        metadata_version = self.broker.metadata.version
        try:
            result = await handler.handle(ctx, body)
            if self.broker.metadata.version != metadata_version:
                await self.broker.metadata.persisted()  # no answer before the change it made is on disk
        except KafkaError as exc:
            log.info("%s v%d from %s failed: %s %s", handler.name, header.api_version, self.peer, exc.code.name, exc)
            result = error_response(header.api_key, header.api_version, int(exc.code))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s v%d from %s: internal error", handler.name, header.api_version, self.peer)
            result = error_response(header.api_key, header.api_version, int(ErrorCode.UNKNOWN_SERVER_ERROR))
        if result is None:
            return None
        try:
            return self._encode(header, result)
        except Exception:
            log.exception("%s v%d from %s: cannot encode the response", handler.name, header.api_version, self.peer)
            return self._encode(header, error_response(header.api_key, header.api_version,
                                                       int(ErrorCode.UNKNOWN_SERVER_ERROR)))

    def _encode(self, header: RequestHeader, result: Any) -> bytes | list[Any]:
        if isinstance(result, list):  # pre-framed scatter output from a hot path
            return result
        if isinstance(result, dict):
            result = build_response(header.api_key, header.api_version, result)
        return encode_response(header.api_key, header.api_version, header.correlation_id, result)

    def _unsupported_version(self, header: RequestHeader, name: str) -> bytes | None:
        log.info("%s v%d from %s is not supported", name, header.api_version, self.peer)
        if header.api_key == API_VERSIONS:
            # Clients retry with the version range we answer with; the body is always v0.
            from umbra.server.handlers.api_versions import supported_versions

            body = build_response(API_VERSIONS, 0, {"error_code": int(ErrorCode.UNSUPPORTED_VERSION),
                                                    "api_keys": supported_versions()})
            return encode_response(API_VERSIONS, 0, header.correlation_id, body)
        schema = SCHEMAS[header.api_key]
        if not schema.response.min_version <= header.api_version <= schema.response.max_version:
            self.close()  # no response can be encoded at a version the schema does not have
            return None
        response = error_response(header.api_key, header.api_version, int(ErrorCode.UNSUPPORTED_VERSION))
        return encode_response(header.api_key, header.api_version, header.correlation_id, response)
