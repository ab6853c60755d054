"""The SASL state of one connection on a SASL listener (KIP-43, KIP-152), Kafka's order of things:

1. ApiVersions may come first (clients ask which SaslHandshake versions there are);
2. SaslHandshake v1 names a mechanism the listener enables (else UNSUPPORTED_SASL_MECHANISM, and the client
   may try another);
3. SaslAuthenticate rounds carry the mechanism's tokens until it completes. The principal is then
   ``User:<name>``.

Any other request before that, a SaslAuthenticate before a handshake, or a second handshake, is out of order:
the connection is closed (ILLEGAL_SASL_STATE where a response is possible), with a log line naming the peer.
A failed authentication is answered with SASL_AUTHENTICATION_FAILED and its reason, then the connection is
closed, as Kafka does. Until authenticated a client's requests may be at most ``UNAUTHENTICATED_MAX_BYTES``
(Kafka's ``sasl.server.max.receive.size``), so a stranger cannot make the broker buffer 100 MB frames.

PBKDF2 (PLAIN's password check, a SCRAM login by an unknown user) takes milliseconds: it runs on a worker
thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable

from umbra.errors import ErrorCode, KafkaError
from umbra.security.plain import authenticate_plain
from umbra.security.scram import SaslAuthenticationFailed, ScramMechanism, ScramServer
from umbra.security.users import ScramUsers

log = logging.getLogger("umbra.connection")

API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE = 18, 17, 36
UNAUTHENTICATED_MAX_BYTES = 524288
BEFORE_AUTHENTICATION = frozenset({API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE})


class IllegalSaslState(KafkaError):
    code = ErrorCode.ILLEGAL_SASL_STATE


class _State(enum.Enum):
    START = "start"
    HANDSHAKEN = "handshaken"
    AUTHENTICATED = "authenticated"
    FAILED = "failed"


class SaslSession:
    """One connection's SASL exchange. ``users`` gives the SCRAM users as the broker knows them now."""

    def __init__(self, mechanisms: tuple[str, ...], users: Callable[[], ScramUsers]) -> None:
        self.mechanisms = mechanisms
        self._users = users
        self._state = _State.START
        self.mechanism: str | None = None
        self._scram: ScramServer | None = None
        self.username: str | None = None

    @property
    def authenticated(self) -> bool:
        return self._state is _State.AUTHENTICATED

    @property
    def failed(self) -> bool:
        """The exchange failed or went out of order: the connection closes once the answer is sent."""
        return self._state is _State.FAILED

    def allows(self, api_key: int) -> bool:
        """May a request of ``api_key`` be served now?"""
        return self.authenticated or api_key in BEFORE_AUTHENTICATION

    def refuse(self) -> None:
        """End the exchange (the connection closes once the answer is sent)."""
        self._state = _State.FAILED

    def handshake(self, mechanism: str) -> ErrorCode:
        """SaslHandshake: NONE, or UNSUPPORTED_SASL_MECHANISM (the client may ask again with another)."""
        if self._state is not _State.START:
            self._state = _State.FAILED
            raise IllegalSaslState("SaslHandshake after the SASL exchange began")
        if mechanism not in self.mechanisms:
            return ErrorCode.UNSUPPORTED_SASL_MECHANISM
        self.mechanism = mechanism
        self._state = _State.HANDSHAKEN
        return ErrorCode.NONE

    async def authenticate(self, token: bytes) -> bytes:
        """One SaslAuthenticate round: the server's token. Raises SaslAuthenticationFailed (wrong credentials,
        a malformed message) or IllegalSaslState; either way the session has failed."""
        if self._state is not _State.HANDSHAKEN:
            reason = ("SaslAuthenticate before SaslHandshake" if self._state is _State.START
                      else "SaslAuthenticate after the exchange completed")
            self._state = _State.FAILED
            raise IllegalSaslState(reason)
        try:
            return await self._step(token)
        except KafkaError:
            self._state = _State.FAILED
            raise

    async def _step(self, token: bytes) -> bytes:
        users = self._users()
        if self.mechanism == "PLAIN":
            name = await asyncio.to_thread(authenticate_plain, token, users.credentials)
            self._complete(name)
            return b""
        if self._scram is None:
            mechanism = ScramMechanism.from_name(self.mechanism or "")
            if mechanism is None:  # handshake() admits only configured mechanisms, and config only these
                raise SaslAuthenticationFailed(f"mechanism {self.mechanism} cannot be served")
            self._scram = ScramServer(mechanism, users.lookup(mechanism))
            return await asyncio.to_thread(self._scram.receive_client_first, token)
        final, name = self._scram.receive_client_final(token)
        self._complete(name)
        return final

    def _complete(self, name: str) -> None:
        self._state = _State.AUTHENTICATED
        self.username = name
