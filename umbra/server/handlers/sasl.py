"""SaslHandshake (17) and SaslAuthenticate (36): the connection's SASL session does the work
(:mod:`umbra.server.sasl`). On a listener without SASL both are out of place: ILLEGAL_SASL_STATE, as Kafka's
request handler answers."""

from __future__ import annotations

import logging
from typing import Any

from umbra.errors import ErrorCode, KafkaError
from umbra.server.handlers import RequestContext, handles

log = logging.getLogger("umbra.connection")


# Advertised from v0 because librdkafka (before 2.x's newer builds) enables SASL only when v0 is listed, but
# a v0 handshake is refused: after it the tokens would travel without Kafka framing (clients before Kafka 1.0;
# Kafka 4 dropped it too). Every client umbra is tested with sends v1.
@handles(17, "SaslHandshake", 0, 1)
async def handle_sasl_handshake(ctx: RequestContext, request: Any) -> dict[str, Any]:
    session = ctx.sasl
    if session is None:
        return {"error_code": int(ErrorCode.ILLEGAL_SASL_STATE), "mechanisms": []}
    if ctx.api_version == 0:
        session.refuse()
        log.warning("closing connection %s: SaslHandshake v0 (unframed SASL tokens) is not supported; use a client "
                    "that sends v1 (Kafka 1.0 or later)", ctx.peer)
        return {"error_code": int(ErrorCode.UNSUPPORTED_VERSION), "mechanisms": list(session.mechanisms)}
    try:
        code = session.handshake(str(request.mechanism or ""))
    except KafkaError as exc:
        log.warning("closing connection %s: %s", ctx.peer, exc)
        return {"error_code": int(exc.code), "mechanisms": list(session.mechanisms)}
    if code != ErrorCode.NONE:
        log.info("connection %s asked for SASL mechanism %r; this listener offers %s", ctx.peer, request.mechanism,
                 ", ".join(session.mechanisms))
    return {"error_code": int(code), "mechanisms": list(session.mechanisms)}


@handles(36, "SaslAuthenticate", 0, 2)
async def handle_sasl_authenticate(ctx: RequestContext, request: Any) -> dict[str, Any]:
    session = ctx.sasl
    if session is None:
        return _failure(ErrorCode.ILLEGAL_SASL_STATE, "this listener does not use SASL")
    try:
        token = await session.authenticate(bytes(request.auth_bytes or b""))
    except KafkaError as exc:
        log.warning("closing connection %s: SASL %s login refused: %s", ctx.peer, session.mechanism or "",
                    exc.message)
        return _failure(exc.code, exc.message)
    if session.authenticated:
        log.debug("connection %s authenticated as User:%s (SASL %s)", ctx.peer, session.username, session.mechanism)
    return {"error_code": 0, "error_message": None, "auth_bytes": token, "session_lifetime_ms": 0}


def _failure(code: ErrorCode, message: str) -> dict[str, Any]:
    return {"error_code": int(code), "error_message": message, "auth_bytes": b"", "session_lifetime_ms": 0}
