"""SASL/PLAIN (RFC 4616) checked against the SCRAM users: there is one store of users, salted and hashed only.

A PLAIN password is salted with the stored salt and iterations and its stored key compared, in constant time,
with the user's SCRAM credential. That is one PBKDF2 per attempt (a few milliseconds at 4096 iterations): the
caller runs :func:`authenticate_plain` off the event loop. An unknown user costs the same PBKDF2 and fails with
the same message as a wrong password.

Pure: no sockets, no event loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from umbra.security.scram import MIN_ITERATIONS, SaslAuthenticationFailed, ScramCredential, ScramMechanism

INVALID_CREDENTIALS = "Authentication failed: Invalid username or password"  # Kafka's words
# Spent on unknown users, so that they take as long as known ones.
_FAKE_SALT = b"umbra-plain-unknown-user"


@dataclass(frozen=True, slots=True)
class PlainMessage:
    authzid: str
    username: str
    password: str = field(repr=False)


def parse_plain(message: bytes) -> PlainMessage:
    """``[authzid] NUL username NUL password`` (UTF-8). SaslAuthenticationFailed names what is malformed."""
    try:
        text = bytes(message).decode("utf-8")
    except UnicodeDecodeError:
        raise SaslAuthenticationFailed("Invalid SASL/PLAIN message: not UTF-8") from None
    tokens = text.split("\0")
    if len(tokens) != 3:
        raise SaslAuthenticationFailed(f"Invalid SASL/PLAIN message: expected 3 tokens, got {len(tokens)}")
    authzid, username, password = tokens
    if not username:
        raise SaslAuthenticationFailed("Authentication failed: username not specified")
    if not password:
        raise SaslAuthenticationFailed("Authentication failed: password not specified")
    if authzid and authzid != username:
        raise SaslAuthenticationFailed("Authentication failed: the authorization id must be the user name")
    return PlainMessage(authzid, username, password)


def authenticate_plain(message: bytes, credentials_of: Callable[[str], Sequence[ScramCredential]]) -> str:
    """The user name the PLAIN ``message`` authenticates: its password is that of one of the user's SCRAM
    credentials (usually they all hold the same one). Raises SaslAuthenticationFailed."""
    plain = parse_plain(message)
    credentials = credentials_of(plain.username)
    if not credentials:
        ScramMechanism.SCRAM_SHA_256.salted_password(plain.password, _FAKE_SALT, MIN_ITERATIONS)
        raise SaslAuthenticationFailed(INVALID_CREDENTIALS)
    if not any(credential.matches_password(plain.password) for credential in credentials):
        raise SaslAuthenticationFailed(INVALID_CREDENTIALS)
    return plain.username
