"""SASL towards a remote broker: SaslHandshake, then SaslAuthenticate rounds (KIP-43, KIP-152).

Runs on a new connection right after ApiVersions (which Kafka answers before authentication). PLAIN sends
``\\0user\\0password`` once; SCRAM-SHA-256/512 runs the RFC 5802 exchange, and the server's final message
must prove it holds the credential. A password is read when the connection is made (a rotated file is picked
up by the next connection) and appears in no error message.
"""

from __future__ import annotations

from typing import Protocol

from umbra.client import versions as api
from umbra.client.errors import ClientError, ClientResponseError, UnsupportedApiError
from umbra.client.settings import SaslSettings
from umbra.errors import ErrorCode, KafkaError
from umbra.security.scram import ScramClient, ScramMechanism


class SaslAuthenticationError(ClientError):
    """The remote refused our credentials, or could not prove it holds them (SCRAM). Not retriable as is."""


class _Requester(Protocol):
    """The part of a connection an exchange needs (a ``BrokerConnection``)."""

    host: str
    port: int

    def supports(self, api_key: int) -> bool: ...

    def version(self, api_key: int) -> int: ...

    async def request(self, api_key: int, fields: dict[str, object], *, version: int | None = None,
                      timeout: float | None = None) -> object: ...


async def authenticate(connection: _Requester, settings: SaslSettings) -> None:
    """Log in on ``connection`` with ``settings``; raises SaslAuthenticationError or ClientError."""
    where = f"{connection.host}:{connection.port}"
    if not connection.supports(api.SASL_HANDSHAKE) or not connection.supports(api.SASL_AUTHENTICATE):
        raise UnsupportedApiError(f"{where} does not offer SaslHandshake v1 and SaslAuthenticate (Kafka 1.0 or "
                                  f"later is needed for SASL)")
    handshake = await connection.request(api.SASL_HANDSHAKE, {"mechanism": settings.mechanism})
    code = getattr(handshake, "error_code", 0)
    if code == ErrorCode.UNSUPPORTED_SASL_MECHANISM:
        offered = ", ".join(getattr(handshake, "mechanisms", None) or []) or "none"
        raise SaslAuthenticationError(f"{where} does not offer SASL mechanism {settings.mechanism} "
                                      f"(it offers: {offered})")
    if code:
        raise ClientResponseError(code, f"SaslHandshake to {where}")
    try:
        password = settings.password()
    except ValueError as exc:
        raise SaslAuthenticationError(str(exc)) from None
    if settings.mechanism == "PLAIN":
        await _round(connection, where, b"\0" + settings.username.encode() + b"\0" + password.encode())
        return
    mechanism = ScramMechanism.from_name(settings.mechanism)
    if mechanism is None:
        raise SaslAuthenticationError(f"SASL mechanism {settings.mechanism} is not one umbra can use")
    try:
        scram = ScramClient(mechanism, settings.username, password)
        server_first = await _round(connection, where, scram.client_first())
        server_final = await _round(connection, where, scram.client_final(server_first))
        scram.verify_server_final(server_final)
    except (KafkaError, ValueError) as exc:  # the exchange's own checks (the server's nonce, its signature)
        raise SaslAuthenticationError(f"SASL {settings.mechanism} with {where} failed: {exc}") from None


async def _round(connection: _Requester, where: str, token: bytes) -> bytes:
    response = await connection.request(api.SASL_AUTHENTICATE, {"auth_bytes": token})
    code = getattr(response, "error_code", 0)
    if code:
        message = getattr(response, "error_message", None) or ""
        if code == ErrorCode.SASL_AUTHENTICATION_FAILED:
            raise SaslAuthenticationError(f"{where} refused the credentials: {message or 'authentication failed'}")
        raise ClientResponseError(code, f"SaslAuthenticate to {where}: {message}")
    return bytes(getattr(response, "auth_bytes", b"") or b"")
