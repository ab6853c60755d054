"""TLS for the Kafka listeners: the server's ``ssl.SSLContext`` from a listener's settings, and the principal a
client certificate gives (mTLS).

The principal is ``User:<CN>``, the subject's common name, as the issue specifies; this is what Kafka gives with
``ssl.principal.mapping.rules=RULE:^.*[Cc][Nn]=([^,]*).*$/$1/``. Kafka's default rule (``DEFAULT``) gives the whole
distinguished name instead; umbra uses that only for a certificate without a CN: ``User:O=acme,C=GB``
(RFC 2253: the most specific attribute first, ``, + " \\ < > ;`` escaped with a backslash).
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from umbra.config import ClientAuth, TlsSettings

MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2

# The keywords RFC 2253 (and Java's X500Principal) use; other attributes keep the name OpenSSL gives them.
_DN_KEYWORDS = {"commonName": "CN", "countryName": "C", "localityName": "L", "stateOrProvinceName": "ST",
                "organizationName": "O", "organizationalUnitName": "OU", "streetAddress": "STREET",
                "domainComponent": "DC", "userId": "UID"}
_DN_SPECIAL = frozenset(',+"\\<>;')

_VERIFY_MODES = {ClientAuth.NONE: ssl.CERT_NONE, ClientAuth.REQUESTED: ssl.CERT_OPTIONAL,
                 ClientAuth.REQUIRED: ssl.CERT_REQUIRED}


class TlsSetupError(Exception):
    """A certificate, key or CA file cannot be used; the message is one line naming the file."""


def server_context(settings: TlsSettings) -> ssl.SSLContext:
    """The context a TLS listener serves with: TLS 1.2 or later, the listener's certificate, and client
    certificates checked against ``ca_file`` as ``client_auth`` says (none, requested, required)."""
    _expect_pem(settings.cert_file, b"-----BEGIN CERTIFICATE-----", "cert_file", "a PEM certificate")
    _expect_pem(settings.key_file, b"PRIVATE KEY-----", "key_file", "a PEM private key")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MINIMUM_VERSION
    context.options |= ssl.OP_NO_RENEGOTIATION
    try:
        # A key that needs a password would make OpenSSL prompt on the terminal: refused instead.
        context.load_cert_chain(settings.cert_file, settings.key_file, password=_encrypted_key(settings.key_file))
    except ssl.SSLError as exc:
        raise TlsSetupError(f"cannot use cert_file {settings.cert_file} with key_file {settings.key_file}: "
                            f"{_reason(exc)}") from None
    except OSError as exc:
        raise TlsSetupError(f"cannot read {exc.filename or settings.cert_file}: {exc.strerror or exc}") from None
    if settings.ca_file is not None:
        try:
            context.load_verify_locations(cafile=settings.ca_file)
        except ssl.SSLError as exc:
            raise TlsSetupError(f"ca_file {settings.ca_file}: no usable CA certificate in it ({_reason(exc)})") \
                from None
        except OSError as exc:
            raise TlsSetupError(f"cannot read ca_file {settings.ca_file}: {exc.strerror or exc}") from None
    context.verify_mode = _VERIFY_MODES[settings.client_auth]
    return context


def _expect_pem(path: Path, marker: bytes, key: str, what: str) -> None:
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise TlsSetupError(f"cannot read {key} {path}: {exc.strerror or exc}") from None
    if marker not in text:
        raise TlsSetupError(f"{key} {path}: not {what}")


def _encrypted_key(path: Path) -> Callable[[], NoReturn]:
    def refuse() -> NoReturn:
        raise TlsSetupError(f"key_file {path} is encrypted: umbra needs an unencrypted key (protect it with file "
                            "permissions)")

    return refuse


def _reason(exc: ssl.SSLError) -> str:
    """``KEY_VALUES_MISMATCH`` -> ``key values mismatch``: OpenSSL's reason, without the file and line."""
    reason = getattr(exc, "reason", None)
    return str(reason).lower().replace("_", " ") if reason else str(exc)


def principal_from_certificate(peercert: Mapping[str, Any] | None) -> str | None:
    """``User:<CN>`` for a client certificate (``SSLObject.getpeercert()``'s dict); ``User:<DN>`` when its
    subject has no CN; None without a certificate or with an empty subject (the connection stays anonymous).
    With several CNs the last, the most specific, names the client."""
    subject: Sequence[Sequence[tuple[str, str]]] = peercert.get("subject", ()) if peercert else ()
    common_names = [value for rdn in subject for attribute, value in rdn if attribute == "commonName"]
    if common_names:
        return f"User:{common_names[-1]}"
    name = distinguished_name(subject)
    return f"User:{name}" if name else None


def distinguished_name(subject: Sequence[Sequence[tuple[str, str]]]) -> str:
    """The RFC 2253 string of a subject as ``getpeercert()`` gives it (its RDNs in certificate order)."""
    rdns = ["+".join(f"{_DN_KEYWORDS.get(attribute, attribute)}={_escape(value)}" for attribute, value in rdn)
            for rdn in subject]
    return ",".join(reversed(rdns))


def _escape(value: str) -> str:
    last = len(value) - 1
    return "".join(f"\\{c}" if c in _DN_SPECIAL or (i == 0 and c in "# ") or (i == last and c == " ") else c
                   for i, c in enumerate(value))


# OpenSSL's reasons for the handshake failures an operator meets, said in the listener's terms.
_HANDSHAKE_HINTS = {
    "WRONG_VERSION_NUMBER": "not a TLS client (plaintext on a TLS listener?)",
    "HTTP_REQUEST": "an HTTP request, not a TLS client",
    "UNSUPPORTED_PROTOCOL": f"the client offers no TLS version umbra accepts (at least {MINIMUM_VERSION.name})",
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": "the client sent no certificate (client_auth is required)",
    "CERTIFICATE_VERIFY_FAILED": "its certificate is not trusted by ca_file",
    "TLSV1_ALERT_UNKNOWN_CA": "the client does not trust this listener's certificate",
    "SSLV3_ALERT_BAD_CERTIFICATE": "the client refused this listener's certificate",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": "the client refused this listener's certificate",
}


def client_went_away(exc: OSError) -> bool:
    """The client closed the connection during the handshake: a port probe, or a client giving up. Nothing an
    operator needs to hear about, unlike a refused certificate or a client that does not speak TLS."""
    return isinstance(exc, ConnectionResetError | BrokenPipeError | ssl.SSLEOFError)


def describe_tls_error(exc: OSError) -> str:
    """One line for a failed TLS handshake or a broken TLS connection: what OpenSSL said, and what it usually
    means."""
    if client_went_away(exc):
        return "the client closed the connection during the handshake"
    if isinstance(exc, ssl.SSLError):
        reason = str(getattr(exc, "reason", "") or "")
        detail = getattr(exc, "verify_message", None) if isinstance(exc, ssl.SSLCertVerificationError) else None
        said = reason.lower().replace("_", " ") + (f": {detail}" if detail else "") if reason else str(exc)
        hint = _HANDSHAKE_HINTS.get(reason)
        return f"{hint} ({said})" if hint else said
    return str(exc) or type(exc).__name__
