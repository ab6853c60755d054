"""The --tls mode of produce_consume.py and replication.py: one broker with a PLAINTEXT and an SSL listener.

Both listeners sit on the same broker and the cases over each run back to back, so the SSL/PLAINTEXT ratio
compares like with like on this shared machine. The certificates come from tests/pki.py: a throw-away CA and
a server certificate for 127.0.0.1, in the benchmark's temporary directory.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from harness import BrokerProcess  # noqa: E402
from pki import CertificateAuthority  # noqa: E402

PLAINTEXT, SSL = "PLAINTEXT", "SSL"
LISTENERS = (PLAINTEXT, SSL)


@dataclass(frozen=True)
class TlsListeners:
    """A broker config's `listeners` (PLAINTEXT first, so `BrokerProcess.bootstrap` stays plaintext) and the CA
    that signed the SSL listener's certificate."""

    ca_file: Path
    listeners: list[dict[str, Any]]

    @classmethod
    def create(cls, directory: Path) -> TlsListeners:
        ca = CertificateAuthority(directory)
        server = ca.issue_server()
        return cls(ca.cert_file, [
            {"name": PLAINTEXT, "address": "127.0.0.1:0"},
            {"name": SSL, "address": "127.0.0.1:0", "security_protocol": "SSL",
             "tls": {"cert_file": str(server.cert_file), "key_file": str(server.key_file)}},
        ])  # fmt: skip

    def librdkafka_settings(self, broker: BrokerProcess, listener: str) -> dict[str, str]:
        """`bootstrap.servers` of `listener` on `broker`, and over SSL what a librdkafka client needs to trust it."""
        settings = {"bootstrap.servers": broker.listener_bootstrap(listener)}
        if listener == SSL:
            settings |= {"security.protocol": "SSL", "ssl.ca.location": str(self.ca_file)}
        return settings

    def link_source(self, broker: BrokerProcess, listener: str) -> dict[str, Any]:
        """A shadow link spec's `source` for `listener` on `broker`: over SSL, trusting the CA that signed it."""
        source: dict[str, Any] = {"bootstrap_servers": [broker.listener_bootstrap(listener)]}
        if listener == SSL:
            source["tls"] = {"ca_file": str(self.ca_file)}
        return source


def add_tls_argument(parser: argparse.ArgumentParser, skipped: str) -> None:
    parser.add_argument(
        "--tls", action="store_true", help=f"throughput over an SSL listener as a ratio of a PLAINTEXT one ({skipped})"
    )


def listener_order(listeners: Sequence[str], repeat: int) -> list[str]:
    """`listeners` rotated by `repeat`: with two, which goes first alternates from one repeat to the next."""
    shift = repeat % len(listeners)
    return [*listeners[shift:], *listeners[:shift]]


def ssl_ratio(plaintext: Sequence[float], ssl: Sequence[float]) -> str:
    """SSL/PLAINTEXT of rates measured in pairs (repeat i of each back to back): the median of the pairs' own
    ratios (each pair shares the machine's state of the moment), and, with repeats, best against best."""
    ratios = [s / p for p, s in zip(plaintext, ssl, strict=True)]
    if len(ratios) == 1:
        return f"{ratios[0]:.3f}"
    return (
        f"{statistics.median(ratios):.3f} (median of the repeats' ratios "
        + ", ".join(f"{r:.3f}" for r in ratios)
        + f"; best against best {max(ssl) / max(plaintext):.3f})"
    )
