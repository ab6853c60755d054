"""A throw-away PKI for TLS tests: a CA, server certificates and client certificates, as PEM files.

Made with the `cryptography` package in a directory the test owns (its tmp dir). Keys are EC P-256 (quick to
generate) and unencrypted; certificates are valid from an hour ago for a day.

    ca = CertificateAuthority(tmp_path / "pki")
    server = ca.issue_server()                 # SAN 127.0.0.1 and localhost
    alice = ca.issue_client("alice")           # subject CN=alice
    ca.cert_file                               # what clients and the broker trust
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALID_BEFORE_NOW = datetime.timedelta(hours=1)
_VALID_FOR = datetime.timedelta(days=1)


@dataclass(frozen=True)
class CertFiles:
    """A certificate and its private key, as PEM files."""

    cert_file: Path
    key_file: Path


def _name(common_name: str | None, organization: str | None = None) -> x509.Name:
    attributes = []
    if organization is not None:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    if common_name is not None:
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


class CertificateAuthority:
    """A self-signed CA in ``directory`` that issues server and client certificates there."""

    def __init__(self, directory: Path, name: str = "umbra test CA") -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._subject = _name(name)
        now = datetime.datetime.now(datetime.UTC)
        public = self._key.public_key()
        self._certificate = (
            x509.CertificateBuilder()
            .subject_name(self._subject)
            .issuer_name(self._subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _VALID_BEFORE_NOW)
            .not_valid_after(now + _VALID_FOR)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        self.cert_file = directory / f"{_file_stem(name)}.pem"
        self.cert_file.write_bytes(self._certificate.public_bytes(serialization.Encoding.PEM))

    def issue_server(self, name: str = "server", hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> CertFiles:
        """A server certificate for ``hosts`` (IP addresses and DNS names, in its subjectAltName)."""
        alternative_names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                alternative_names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                alternative_names.append(x509.DNSName(host))
        return self._issue(name, _name(hosts[0]), ExtendedKeyUsageOID.SERVER_AUTH,
                           x509.SubjectAlternativeName(alternative_names))

    def issue_client(self, common_name: str | None, *, organization: str | None = None,
                     name: str | None = None) -> CertFiles:
        """A client certificate with subject ``CN=common_name`` (and ``O=organization``); ``common_name``
        None makes one without a CN."""
        file_name = name or common_name or organization or "client"
        return self._issue(file_name, _name(common_name, organization), ExtendedKeyUsageOID.CLIENT_AUTH, None)

    def _issue(self, file_name: str, subject: x509.Name, usage: x509.ObjectIdentifier,
               alternative_names: x509.SubjectAlternativeName | None) -> CertFiles:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self._subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _VALID_BEFORE_NOW)
            .not_valid_after(now + _VALID_FOR)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                           critical=False)
        )
        if alternative_names is not None:
            builder = builder.add_extension(alternative_names, critical=False)
        certificate = builder.sign(self._key, hashes.SHA256())
        stem = _file_stem(file_name)
        files = CertFiles(self.directory / f"{stem}.pem", self.directory / f"{stem}.key")
        files.cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        _write_key(key, files.key_file)
        return files


def _file_stem(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
