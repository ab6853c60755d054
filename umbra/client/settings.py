"""Typed settings of the outbound client. Key names follow the shadow-link spec's ``source`` section."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """``source.tls`` of a link spec. Placeholder: accepted and carried, wired up in a later issue."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


@dataclass(frozen=True, slots=True)
class SaslSettings:
    """``source.sasl`` of a link spec. Placeholder: accepted and carried, wired up in a later issue."""

    mechanism: str = "PLAIN"
    username: str = ""
    password_env: str = ""


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
