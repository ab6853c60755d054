"""Typed settings of the outbound client. Key names follow the shadow-link spec's ``source`` section."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """``source.tls`` of a link spec: TLS towards the source, with a client certificate for mTLS."""

    ca_file: str | None = None  # None: the system's trusted CAs
    cert_file: str | None = None
    key_file: str | None = None
    verify_hostname: bool = True


@dataclass(frozen=True, slots=True)
class SaslSettings:
    """``source.sasl`` of a link spec. The password is never held here: only where to read it, at each
    connection (a rotated file or variable is picked up by the next connection)."""

    mechanism: str = "SCRAM-SHA-512"
    username: str = ""
    password_file: str | None = None
    password_env: str | None = None

    def password(self) -> str:
        """The password, read now. Errors name the file or variable, never a secret."""
        if self.password_file is not None:
            try:
                with open(self.password_file, encoding="utf-8") as stream:
                    text = stream.read()
            except (OSError, UnicodeDecodeError) as exc:
                raise ValueError(f"source.sasl.password_file {self.password_file}: cannot read it "
                                 f"({type(exc).__name__})") from None
            password = text.removesuffix("\n").removesuffix("\r")  # a file written by echo
        elif self.password_env is not None:
            value = os.environ.get(self.password_env)
            if value is None:
                raise ValueError(f"source.sasl.password_env: the variable {self.password_env} is not set")
            password = value
        else:
            raise ValueError("source.sasl: no password_file or password_env")
        if not password:
            raise ValueError("source.sasl: the password is empty")
        return password


@dataclass(frozen=True, slots=True)
class FetchSettings:
    """``source.client`` of a link spec: the knobs of every Fetch request."""

    fetch_max_wait_ms: int = 500
    fetch_min_bytes: int = 1
    fetch_max_bytes: int = 52428800
    fetch_partition_max_bytes: int = 10485760
    rack: str = ""  # KIP-392: sent as the Fetch's rack_id; a source may then name a replica in this rack

    def __post_init__(self) -> None:
        for name in ("fetch_max_wait_ms", "fetch_min_bytes", "fetch_max_bytes", "fetch_partition_max_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 2**31 - 1:
                raise ValueError(f"{name} must be an integer in 0..2147483647, got {value!r}")


@dataclass(frozen=True, slots=True)
class ConnectionSettings:
    """How one connection to a remote broker behaves."""

    client_id: str = "umbra"
    connect_timeout_s: float = 10.0
    request_timeout_s: float = 30.0
    # Large socket buffers keep a 50 MB fetch from trickling through a default-sized TCP window.
    socket_buffer_bytes: int = 4 * 1024 * 1024
    # Largest response frame accepted; a larger size prefix means the stream cannot be trusted.
    max_response_bytes: int = 512 * 1024 * 1024
    # StreamReader high-water mark: reading pauses above twice this much unconsumed data.
    read_buffer_bytes: int = 16 * 1024 * 1024
    tls: TlsSettings | None = None
    sasl: SaslSettings | None = field(default=None)


# --- parsing (the link spec's source.tls/source.sasl, the broker's inter_broker.tls/.sasl) -----------------------
def _keys(path: str, value: object, allowed: set[str], required: frozenset[str] = frozenset()) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{path}: expected a mapping, got {type(value).__name__}")
    for key in value:
        if key not in allowed:
            raise ValueError(f"{path}.{key}: unknown key (allowed: {', '.join(sorted(allowed))})")
    for key in required:
        if key not in value:
            raise ValueError(f"{path}.{key}: required")
    return value


def _optional_str(path: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{path}: expected a non-empty string, got {value!r}")
    return value


def _flag(path: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{path}: expected true or false, got {value!r}")
    return value


def parse_tls_settings(path: str, value: object) -> TlsSettings | None:
    """A client's ``tls`` mapping: absent or ``enabled: false`` is plaintext. Errors (ValueError) name the key."""
    if value is None:
        return None
    tls = _keys(path, value, {"enabled", "ca_file", "cert_file", "key_file", "verify_hostname"})
    if not _flag(f"{path}.enabled", tls.get("enabled", True)):
        return None
    files = {k: _optional_str(f"{path}.{k}", tls.get(k)) for k in ("ca_file", "cert_file", "key_file")}
    if (files["cert_file"] is None) != (files["key_file"] is None):
        raise ValueError(f"{path}: cert_file and key_file go together (a client certificate for mTLS)")
    return TlsSettings(**files, verify_hostname=_flag(f"{path}.verify_hostname", tls.get("verify_hostname", True)))


def parse_sasl_settings(path: str, value: object) -> SaslSettings | None:
    """A client's ``sasl`` mapping: the mechanism, the user, and where its password is read (a file or a
    variable); a password given inline is refused (these documents are stored and shown)."""
    if value is None:
        return None
    sasl = _keys(path, value, {"mechanism", "username", "password_file", "password_env", "password"},
                 frozenset({"mechanism", "username"}))
    if "password" in sasl:
        raise ValueError(f"{path}.password: never given inline (the document is stored and described); use "
                         "password_file or password_env")
    mechanism = sasl["mechanism"]
    if mechanism not in SASL_MECHANISMS:
        raise ValueError(f"{path}.mechanism: expected one of {', '.join(SASL_MECHANISMS)}, got {mechanism!r}")
    username = _optional_str(f"{path}.username", sasl["username"])
    password_file = _optional_str(f"{path}.password_file", sasl.get("password_file"))
    password_env = _optional_str(f"{path}.password_env", sasl.get("password_env"))
    if (password_file is None) == (password_env is None):
        raise ValueError(f"{path}: exactly one of password_file and password_env")
    return SaslSettings(mechanism, username or "", password_file, password_env)
