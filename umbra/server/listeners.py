"""The Kafka listeners: one server per configured listener, and the TLS handshake of the TLS ones.

A TLS listener does not give ``ssl=`` to ``create_server``: asyncio and uvloop drop a failed server-side
handshake silently (an ``ssl.SSLError`` is an ``OSError``, which they log only in debug mode), and an operator
needs one line naming the peer and what went wrong. So each accepted connection gets a :class:`TlsAcceptor`,
which wraps the loop's own TLS protocol (the one ``create_server(ssl=...)`` would make) and hears how its
handshake ended. Upgrading after the accept (``loop.start_tls``) would lose a ClientHello that arrives before
the upgrade starts: uvloop starts reading as soon as ``connection_made`` returns.

A TLS connection counts in the connection limits from its accept (its handshake too), and a handshake gives up
after ``TLS_HANDSHAKE_TIMEOUT_S``. The decrypted stream goes to a ``KafkaConnection`` once the handshake is done.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from umbra.config import HostPort, ListenerConfig
from umbra.security.tls import client_went_away, describe_tls_error, server_context
from umbra.server.memory import ConnectionLimits

log = logging.getLogger("umbra.connection")

TLS_HANDSHAKE_TIMEOUT_S = 10.0
_BACKLOG = 1024


class ConnectionHost(Protocol):
    """What a listener needs from the broker."""

    connection_limits: ConnectionLimits


ConnectionFactory = Callable[[ListenerConfig], asyncio.BufferedProtocol]


@dataclass
class BoundListener:
    """A listener that is serving, with the port it bound (the configured one, or the one port 0 gave)."""

    config: ListenerConfig
    server: asyncio.Server
    port: int
    handshaking: set[TlsAcceptor] = field(default_factory=set)  # TLS connections until their handshake ends

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def address(self) -> HostPort:
        return HostPort(self.config.address.host, self.port)

    @property
    def advertised(self) -> HostPort:
        """The address clients are told to connect to for this listener."""
        return self.config.advertise or self.address

    def close(self) -> None:
        self.server.close()
        for connection in list(self.handshaking):
            connection.abort()


class Listeners:
    """The broker's listeners: as configured, and once :meth:`open`, bound and serving."""

    def __init__(self, configs: tuple[ListenerConfig, ...]) -> None:
        self.configs = configs
        self.bound: list[BoundListener] = []  # in the configured order

    async def open(self, factory: ConnectionFactory, host: ConnectionHost) -> None:
        for config in self.configs:  # each kept as it opens: a failure later closes the ones open (close())
            self.bound.append(await open_listener(config, factory, host))

    def close(self) -> None:
        for listener in self.bound:
            listener.close()

    def advertised(self, name: str | None = None) -> HostPort:
        """The address clients of listener ``name`` (None: the first) are told to connect to."""
        for listener in self.bound:
            if name is None or listener.name == name:
                return listener.advertised
        first = self.configs[0]  # not serving yet
        return first.advertise or first.address

    def advertised_all(self) -> tuple[tuple[str, str], ...]:
        """(name, HOST:PORT) of every serving listener as clients reach it: what the cluster registration holds."""
        return tuple((listener.name, str(listener.advertised)) for listener in self.bound)

    def addresses(self) -> dict[str, str]:
        """Name -> the HOST:PORT each listener is bound to (port 0 resolved): /v1/health and the ready line."""
        return {listener.name: str(listener.address) for listener in self.bound}


async def open_listener(config: ListenerConfig, factory: ConnectionFactory, host: ConnectionHost) -> BoundListener:
    loop = asyncio.get_running_loop()
    handshaking: set[TlsAcceptor] = set()
    protocol_factory: Callable[[], asyncio.BaseProtocol]
    if config.tls is not None:
        context = server_context(config.tls)

        def protocol_factory() -> asyncio.BaseProtocol:
            return TlsAcceptor(config, context, factory, host, handshaking)
    else:
        def protocol_factory() -> asyncio.BaseProtocol:
            return factory(config)
    server = await loop.create_server(protocol_factory, config.address.host, config.address.port,
                                      reuse_address=True, backlog=_BACKLOG)
    return BoundListener(config, server, server.sockets[0].getsockname()[1], handshaking)


class TlsAcceptor(asyncio.BufferedProtocol):
    """A TCP connection on a TLS listener: it counts the connection in the limits and hands every event to the
    event loop's own TLS protocol (what ``create_server(ssl=...)`` would make), which hands the decrypted
    stream to a ``KafkaConnection`` once the handshake is done; a failed handshake is logged here."""

    def __init__(self, listener: ListenerConfig, context: ssl.SSLContext, factory: ConnectionFactory,
                 host: ConnectionHost, handshaking: set[TlsAcceptor]) -> None:
        loop = asyncio.get_running_loop()
        self._listener = listener
        self._limits = host.connection_limits
        self._handshaking = handshaking
        self._transport: asyncio.Transport | None = None
        self._peer = "?"
        self._ip: str | None = None  # counted in the connection limits
        handshake: asyncio.Future[None] = loop.create_future()
        handshake.add_done_callback(self._handshake_done)
        self._tls: Any = _tls_protocol_class(loop)(loop, factory(listener), context, handshake, server_side=True,
                                                    ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT_S)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        stream = cast(asyncio.Transport, transport)
        peer = stream.get_extra_info("peername")
        self._peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        ip = peer[0] if peer else "?"
        if not self._limits.admit(ip):
            stream.abort()
            return
        self._ip, self._transport = ip, stream
        self._handshaking.add(self)
        self._tls.connection_made(transport)

    def _handshake_done(self, handshake: asyncio.Future[None]) -> None:
        self._handshaking.discard(self)
        if handshake.cancelled() or handshake.exception() is None:
            return  # the KafkaConnection has it now (or the broker closed it)
        exc = handshake.exception()
        if isinstance(exc, OSError):  # ssl.SSLError (not TLS, a certificate refused), a reset, the timeout
            log.log(logging.DEBUG if client_went_away(exc) else logging.WARNING,
                    "TLS handshake with %s on listener %s failed: %s", self._peer, self._listener.name,
                    describe_tls_error(exc))
        else:
            log.error("TLS handshake with %s on listener %s failed", self._peer, self._listener.name, exc_info=exc)

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    # Everything else is the TLS protocol's.
    def get_buffer(self, sizehint: int) -> Any:
        return self._tls.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        self._tls.buffer_updated(nbytes)

    def eof_received(self) -> bool | None:
        return cast(bool | None, self._tls.eof_received())

    def pause_writing(self) -> None:
        self._tls.pause_writing()

    def resume_writing(self) -> None:
        self._tls.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._handshaking.discard(self)
        if self._ip is not None:
            self._limits.leave(self._ip)
            self._ip = None
        if self._transport is not None:  # the TLS protocol saw the connection made
            self._tls.connection_lost(exc)


def _tls_protocol_class(loop: asyncio.AbstractEventLoop) -> Any:
    """The loop's own server-side TLS protocol: uvloop's (Cython) under uvloop, else asyncio's."""
    if type(loop).__module__.startswith("uvloop"):
        from uvloop.loop import SSLProtocol  # type: ignore[attr-defined]

        return SSLProtocol
    return asyncio.sslproto.SSLProtocol
