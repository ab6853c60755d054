"""SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka speaks them (KIP-84): the stored credential
and both sides of the exchange, as pure state machines (bytes in, bytes out; no sockets, no event loop).

Kafka's dialect: no channel binding (a client asking for it with ``p=`` is refused; ``n`` and ``y`` are
accepted), passwords are used as UTF-8 without SASLprep, at least 4096 iterations, and the ``tokenauth=true``
extension asks for delegation-token authentication, which umbra does not offer.

A server never tells an unknown user from a wrong password: an unknown user gets a salt derived from its
name (the same on every attempt) and the exchange runs to the end, doing the same work, before it fails
with the same message.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import os
import secrets
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from umbra.errors import ErrorCode, KafkaError

MIN_ITERATIONS = 4096  # Kafka's ScramMechanism.minIterations
MAX_ITERATIONS = 16384  # the most AlterUserScramCredentials accepts
DEFAULT_SALT_BYTES = 32
# The client's ceiling for the iterations a server asks for: a hostile server could make it compute for minutes.
CLIENT_MAX_ITERATIONS = 100_000


class SaslAuthenticationFailed(KafkaError):
    """The exchange failed: bad syntax, unknown user or wrong password (indistinguishable), a nonce or channel
    binding that does not match, a message out of order, or (client side) a server that cannot prove itself."""

    code = ErrorCode.SASL_AUTHENTICATION_FAILED


class ScramMechanism(enum.Enum):
    SCRAM_SHA_256 = "SCRAM-SHA-256"
    SCRAM_SHA_512 = "SCRAM-SHA-512"

    @property
    def type_code(self) -> int:
        """Kafka's wire code (``ScramMechanism.type()``): 1 and 2; 0 is UNKNOWN."""
        return 1 if self is ScramMechanism.SCRAM_SHA_256 else 2

    @property
    def hash_name(self) -> str:
        return "sha256" if self is ScramMechanism.SCRAM_SHA_256 else "sha512"

    @property
    def digest_size(self) -> int:
        return 32 if self is ScramMechanism.SCRAM_SHA_256 else 64

    @classmethod
    def from_code(cls, code: int) -> ScramMechanism | None:
        return {1: cls.SCRAM_SHA_256, 2: cls.SCRAM_SHA_512}.get(code)

    @classmethod
    def from_name(cls, name: str) -> ScramMechanism | None:
        try:
            return cls(name)
        except ValueError:
            return None

    def hmac(self, key: bytes, message: bytes) -> bytes:
        return hmac.new(key, message, self.hash_name).digest()

    def hash(self, data: bytes) -> bytes:
        return hashlib.new(self.hash_name, data).digest()

    def salted_password(self, password: str | bytes, salt: bytes, iterations: int) -> bytes:
        """RFC 5802's Hi(): PBKDF2 with this mechanism's HMAC, as long as its digest."""
        secret = password.encode("utf-8") if isinstance(password, str) else password
        return hashlib.pbkdf2_hmac(self.hash_name, secret, salt, iterations)


@dataclass(frozen=True, slots=True)
class ScramCredential:
    """What a server keeps of a password: never the password, nor the salted password."""

    mechanism: ScramMechanism
    salt: bytes
    iterations: int
    stored_key: bytes = field(repr=False)
    server_key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not self.salt:
            raise ValueError("the salt is empty")
        check_iterations(self.iterations)
        size = self.mechanism.digest_size
        if len(self.stored_key) != size or len(self.server_key) != size:
            raise ValueError(f"{self.mechanism.value} keys are {size} bytes")

    @classmethod
    def from_salted_password(cls, mechanism: ScramMechanism, salt: bytes, salted_password: bytes,
                             iterations: int) -> ScramCredential:
        """The credential as Kafka derives it from what AlterUserScramCredentials carries (KIP-554)."""
        if len(salted_password) != mechanism.digest_size:
            raise ValueError(f"a {mechanism.value} salted password is {mechanism.digest_size} bytes, "
                             f"not {len(salted_password)}")
        client_key = mechanism.hmac(salted_password, b"Client Key")
        return cls(mechanism, bytes(salt), iterations, mechanism.hash(client_key),
                   mechanism.hmac(salted_password, b"Server Key"))

    def to_json(self) -> dict[str, str | int]:
        return {"mechanism": self.mechanism.value, "salt": _b64(self.salt), "iterations": self.iterations,
                "stored_key": _b64(self.stored_key), "server_key": _b64(self.server_key)}

    @classmethod
    def from_json(cls, data: object) -> ScramCredential:
        """ValueError naming what is wrong."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a credential is a JSON object, not {type(data).__name__}")
        mechanism = ScramMechanism.from_name(str(data.get("mechanism")))
        if mechanism is None:
            raise ValueError(f"unknown mechanism {data.get('mechanism')!r}")
        iterations = data.get("iterations")
        if not isinstance(iterations, int) or isinstance(iterations, bool):
            raise ValueError(f"iterations {iterations!r} is not a number")
        return cls(mechanism, _unb64_field(data, "salt"), iterations, _unb64_field(data, "stored_key"),
                   _unb64_field(data, "server_key"))

    def matches_password(self, password: str | bytes) -> bool:
        """The password salted with this credential's salt and iterations gives its stored key (constant time)."""
        salted = self.mechanism.salted_password(password, self.salt, self.iterations)
        stored_key = self.mechanism.hash(self.mechanism.hmac(salted, b"Client Key"))
        return hmac.compare_digest(stored_key, self.stored_key)


def check_iterations(iterations: int) -> None:
    if iterations < MIN_ITERATIONS:
        raise ValueError(f"too few iterations: {iterations} (at least {MIN_ITERATIONS})")
    if iterations > MAX_ITERATIONS:
        raise ValueError(f"too many iterations: {iterations} (at most {MAX_ITERATIONS})")


def derive_credential(mechanism: ScramMechanism, password: str | bytes, salt: bytes | None = None,
                      iterations: int = MIN_ITERATIONS) -> ScramCredential:
    """A new credential for ``password`` (a random salt unless one is given). ValueError for iterations
    outside 4096..16384 or an empty password."""
    check_iterations(iterations)
    if not password:
        raise ValueError("the password is empty")
    salt = os.urandom(DEFAULT_SALT_BYTES) if salt is None else salt
    return ScramCredential.from_salted_password(mechanism, salt, mechanism.salted_password(password, salt, iterations),
                                                iterations)


# --- message syntax (RFC 5802 section 7) -------------------------------------------------------------------
def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise SaslAuthenticationFailed(f"{what} is not base64") from None


def _unb64_field(data: Mapping[str, Any], name: str) -> bytes:
    value = data.get(name)
    if not isinstance(value, str):
        raise ValueError(f"{name} is missing")
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise ValueError(f"{name} is not base64") from None


def escape_saslname(name: str) -> str:
    return name.replace("=", "=3D").replace(",", "=2C")


def unescape_saslname(text: str) -> str:
    """``=2C`` is a comma and ``=3D`` an equals sign; any other ``=`` (or a bare comma) is malformed."""
    if not text:
        raise SaslAuthenticationFailed("empty user name")
    out = []
    i = 0
    while i < len(text):
        if text[i] == "=":
            escape = text[i:i + 3]
            if escape not in ("=2C", "=3D"):
                raise SaslAuthenticationFailed(f"invalid escape {escape!r} in a user name")
            out.append("," if escape == "=2C" else "=")
            i += 3
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _printable_nonce(nonce: str) -> bool:
    return bool(nonce) and all(0x21 <= ord(c) <= 0x7E and c != "," for c in nonce)


def _decode(message: bytes, what: str) -> str:
    try:
        return bytes(message).decode("utf-8")
    except UnicodeDecodeError:
        raise SaslAuthenticationFailed(f"the {what} is not UTF-8") from None


def _attribute(part: str, name: str, what: str) -> str:
    if not part.startswith(name + "="):
        raise SaslAuthenticationFailed(f"the {what} lacks {name}= where expected")
    return part[len(name) + 1:]


def _extensions(parts: list[str], what: str) -> dict[str, str]:
    """Kafka's SCRAM extensions (``key=value`` after the nonce; keys are letters)."""
    found = {}
    for part in parts:
        key, sep, value = part.partition("=")
        if not sep or not key.isascii() or not key.isalpha() or not value:
            raise SaslAuthenticationFailed(f"the {what} has a malformed extension {part[:40]!r}")
        found[key] = value
    return found


@dataclass(frozen=True, slots=True)
class ClientFirst:
    gs2_header: str  # "n,," or "n,a=...," (or "y,...")
    authzid: str | None
    username: str
    nonce: str
    extensions: dict[str, str]
    bare: str  # the message without its gs2 header: part of the AuthMessage


def parse_client_first(message: bytes) -> ClientFirst:
    text = _decode(message, "client-first message")
    flag, sep, rest = text.partition(",")
    if not sep:
        raise SaslAuthenticationFailed("the client-first message has no GS2 header")
    if flag.startswith("p="):
        raise SaslAuthenticationFailed("channel binding is not supported (use SCRAM without -PLUS)")
    if flag not in ("n", "y"):
        raise SaslAuthenticationFailed(f"the client-first message has an invalid GS2 flag {flag[:10]!r}")
    authzid_part, sep, bare = rest.partition(",")
    if not sep:
        raise SaslAuthenticationFailed("the client-first message has no GS2 header")
    authzid = unescape_saslname(_attribute(authzid_part, "a", "GS2 header")) if authzid_part else None
    parts = bare.split(",")
    if parts[0].startswith("m="):
        raise SaslAuthenticationFailed("mandatory extensions (m=) are not supported")
    if len(parts) < 2:
        raise SaslAuthenticationFailed("the client-first message needs n= and r=")
    username = unescape_saslname(_attribute(parts[0], "n", "client-first message"))
    nonce = _attribute(parts[1], "r", "client-first message")
    if not _printable_nonce(nonce):
        raise SaslAuthenticationFailed("the client nonce is empty or not printable ASCII")
    return ClientFirst(f"{flag},{authzid_part},", authzid, username, nonce,
                       _extensions(parts[2:], "client-first message"), bare)


@dataclass(frozen=True, slots=True)
class ClientFinal:
    channel_binding: bytes
    nonce: str
    proof: bytes
    without_proof: str  # part of the AuthMessage


def parse_client_final(message: bytes) -> ClientFinal:
    text = _decode(message, "client-final message")
    without_proof, sep, proof_part = text.rpartition(",")
    parts = without_proof.split(",")
    if not sep or len(parts) < 2:
        raise SaslAuthenticationFailed("the client-final message needs c=, r= and p=")
    channel_binding = _unb64(_attribute(parts[0], "c", "client-final message"), "the channel binding")
    nonce = _attribute(parts[1], "r", "client-final message")
    _extensions(parts[2:], "client-final message")
    proof = _unb64(_attribute(proof_part, "p", "client-final message"), "the client proof")
    return ClientFinal(channel_binding, nonce, proof, without_proof)


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


class _State(enum.Enum):
    START = "not started"
    SENT_FIRST = "under way"  # server: answered client-first; client: sent client-first
    SENT_FINAL = "awaiting the server-final message"  # client only: sent client-final
    DONE = "complete"
    FAILED = "failed"


class _Exchange(Protocol):
    _state: _State


@contextmanager
def _failing(exchange: _Exchange) -> Iterator[None]:
    """Any failure ends the exchange: every later message fails too."""
    try:
        yield
    except SaslAuthenticationFailed:
        exchange._state = _State.FAILED
        raise


def _expect(state: _State, expected: _State, what: str) -> None:
    if state is not expected:
        raise SaslAuthenticationFailed(f"{what} out of order (the exchange is {state.value})")


# Unknown users get salts and keys derived from this process's secret: the same salt on every attempt for a
# name (as a real user has), and a stored key no proof can match.
_FAKE_SECRET = secrets.token_bytes(32)


def _fake_credential(mechanism: ScramMechanism, username: str) -> ScramCredential:
    seed = mechanism.hmac(_FAKE_SECRET, f"{mechanism.value}\0{username}".encode())
    salt = (seed * 2)[:DEFAULT_SALT_BYTES]
    keys = mechanism.hmac(seed, b"keys")
    return ScramCredential(mechanism, salt, MIN_ITERATIONS, keys, mechanism.hmac(keys, b"server"))


class ScramServer:
    """One server-side exchange: :meth:`receive_client_first`, then :meth:`receive_client_final`. Every
    failure raises :class:`SaslAuthenticationFailed` and ends the exchange (later calls fail too).

    ``lookup`` returns the user's credential for this mechanism, or None. ``nonce`` is for tests only."""

    def __init__(self, mechanism: ScramMechanism, lookup: Callable[[str], ScramCredential | None], *,
                 nonce: str | None = None) -> None:
        self.mechanism = mechanism
        self._lookup = lookup
        self._server_nonce = nonce if nonce is not None else secrets.token_urlsafe(24)
        self._state = _State.START
        self._first: ClientFirst | None = None
        self._credential: ScramCredential | None = None
        self._known = False
        self._server_first = ""
        self.username: str | None = None  # set once authenticated

    @property
    def complete(self) -> bool:
        return self._state is _State.DONE

    def receive_client_first(self, message: bytes) -> bytes:
        """The server-first message (``r=...,s=...,i=...``) for the client-first message."""
        with _failing(self):
            _expect(self._state, _State.START, "client-first message")
            return self._receive_client_first(message)

    def receive_client_final(self, message: bytes) -> tuple[bytes, str]:
        """The server-final message (``v=...``) and the authenticated user name."""
        with _failing(self):
            _expect(self._state, _State.SENT_FIRST, "client-final message")
            return self._receive_client_final(message)

    def _invalid_credentials(self) -> SaslAuthenticationFailed:
        # Kafka's words; the same for an unknown user and a wrong password
        return SaslAuthenticationFailed("Authentication failed during authentication due to invalid credentials "
                                        f"with SASL mechanism {self.mechanism.value}")

    def _receive_client_first(self, message: bytes) -> bytes:
        first = parse_client_first(message)
        if first.authzid is not None and first.authzid != first.username:
            raise SaslAuthenticationFailed("Authentication failed: the authorization id must be the user name")
        if first.extensions.get("tokenauth", "").lower() == "true":
            raise SaslAuthenticationFailed("Authentication failed: delegation tokens are not supported")
        credential = self._lookup(first.username)
        self._known = credential is not None and credential.mechanism is self.mechanism
        self._credential = credential if credential is not None and self._known else _fake_credential(
            self.mechanism, first.username)
        self._first = first
        self._server_first = (f"r={first.nonce}{self._server_nonce},s={_b64(self._credential.salt)},"
                              f"i={self._credential.iterations}")
        self._state = _State.SENT_FIRST
        return self._server_first.encode("ascii")

    def _receive_client_final(self, message: bytes) -> tuple[bytes, str]:
        first, credential = self._first, self._credential
        assert first is not None and credential is not None
        final = parse_client_final(message)
        if final.channel_binding != first.gs2_header.encode("utf-8"):
            raise SaslAuthenticationFailed("the channel binding does not match the client-first message's GS2 header")
        # Ends with, as Kafka's server checks: librdkafka before 2.1 sends its own nonce again in front of the
        # combined one. The server's fresh part is still required, and the proof covers the message as sent.
        if not final.nonce.endswith(first.nonce + self._server_nonce):
            raise SaslAuthenticationFailed("the nonce does not match the exchange's")
        auth_message = f"{first.bare},{self._server_first},{final.without_proof}".encode()
        client_signature = self.mechanism.hmac(credential.stored_key, auth_message)
        if len(final.proof) != len(client_signature):
            raise self._invalid_credentials()
        client_key = _xor(final.proof, client_signature)
        proven = hmac.compare_digest(self.mechanism.hash(client_key), credential.stored_key)
        if not (proven and self._known):
            raise self._invalid_credentials()
        self._state = _State.DONE
        self.username = first.username
        server_signature = self.mechanism.hmac(credential.server_key, auth_message)
        return f"v={_b64(server_signature)}".encode("ascii"), first.username


class ScramClient:
    """One client-side exchange: :meth:`client_first`, :meth:`client_final` (given the server-first message),
    :meth:`verify_server_final`. Failures raise :class:`SaslAuthenticationFailed`. ``nonce`` is for tests."""

    def __init__(self, mechanism: ScramMechanism, username: str, password: str | bytes, *,
                 extensions: Mapping[str, str] | None = None, nonce: str | None = None,
                 max_iterations: int = CLIENT_MAX_ITERATIONS) -> None:
        if not username:
            raise ValueError("the user name is empty")
        for key, value in (extensions or {}).items():
            if not (key.isascii() and key.isalpha()) or not value or "," in value:
                raise ValueError(f"invalid SCRAM extension {key!r}")
        self.mechanism = mechanism
        self._username = username
        self._password = password
        self._extensions = dict(extensions or {})
        self._nonce = nonce if nonce is not None else secrets.token_urlsafe(24)
        if not _printable_nonce(self._nonce):
            raise ValueError("the nonce must be printable ASCII without commas")
        self._max_iterations = max_iterations
        self._state = _State.START
        self._bare = ""
        self._server_signature = b""

    @property
    def complete(self) -> bool:
        return self._state is _State.DONE

    def client_first(self) -> bytes:
        with _failing(self):
            _expect(self._state, _State.START, "client-first message")
            return self._client_first()

    def client_final(self, server_first: bytes) -> bytes:
        """The client-final message (with the proof) for the server-first message."""
        with _failing(self):
            _expect(self._state, _State.SENT_FIRST, "server-first message")
            return self._client_final(server_first)

    def verify_server_final(self, server_final: bytes) -> None:
        """The server proved it holds the credential; raises if it refused or cannot prove it."""
        with _failing(self):
            _expect(self._state, _State.SENT_FINAL, "server-final message")
            self._verify_server_final(server_final)

    def _client_first(self) -> bytes:
        extensions = "".join(f",{k}={v}" for k, v in self._extensions.items())
        self._bare = f"n={escape_saslname(self._username)},r={self._nonce}{extensions}"
        self._state = _State.SENT_FIRST
        return f"n,,{self._bare}".encode()

    def _client_final(self, server_first: bytes) -> bytes:
        text = _decode(server_first, "server-first message")
        parts = text.split(",")
        if parts[0].startswith("m="):
            raise SaslAuthenticationFailed("the server requires an extension (m=) this client does not know")
        if len(parts) < 3:
            raise SaslAuthenticationFailed("the server-first message needs r=, s= and i=")
        nonce = _attribute(parts[0], "r", "server-first message")
        salt = _unb64(_attribute(parts[1], "s", "server-first message"), "the salt")
        iterations_text = _attribute(parts[2], "i", "server-first message")
        if not nonce.startswith(self._nonce) or len(nonce) == len(self._nonce) or not _printable_nonce(nonce):
            raise SaslAuthenticationFailed("the server nonce does not extend the client's")
        if not salt:
            raise SaslAuthenticationFailed("the server sent an empty salt")
        if not (iterations_text.isascii() and iterations_text.isdigit()):
            raise SaslAuthenticationFailed(f"the server sent invalid iterations {iterations_text[:12]!r}")
        iterations = int(iterations_text)
        if not MIN_ITERATIONS <= iterations <= self._max_iterations:
            raise SaslAuthenticationFailed(f"the server asks for {iterations} iterations (this client accepts "
                                           f"{MIN_ITERATIONS}..{self._max_iterations})")
        salted = self.mechanism.salted_password(self._password, salt, iterations)
        client_key = self.mechanism.hmac(salted, b"Client Key")
        stored_key = self.mechanism.hash(client_key)
        without_proof = f"c={_b64(b'n,,')},r={nonce}"
        auth_message = f"{self._bare},{text},{without_proof}".encode()
        proof = _xor(client_key, self.mechanism.hmac(stored_key, auth_message))
        server_key = self.mechanism.hmac(salted, b"Server Key")
        self._server_signature = self.mechanism.hmac(server_key, auth_message)
        self._state = _State.SENT_FINAL
        return f"{without_proof},p={_b64(proof)}".encode("ascii")

    def _verify_server_final(self, server_final: bytes) -> None:
        text = _decode(server_final, "server-final message")
        first = text.split(",")[0]
        if first.startswith("e="):
            raise SaslAuthenticationFailed(f"the server refused: {first[2:]}")
        signature = _unb64(_attribute(first, "v", "server-final message"), "the server signature")
        if not hmac.compare_digest(signature, self._server_signature):
            raise SaslAuthenticationFailed("the server's signature is wrong: it does not hold this user's credential")
        self._state = _State.DONE
