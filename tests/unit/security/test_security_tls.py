"""umbra.security.tls: the listener's SSLContext (TLS >= 1.2, client_auth), the principal of a client certificate,
and the one line said about a failed handshake. Handshakes run in memory (ssl.MemoryBIO), no sockets."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from pki import CertFiles, CertificateAuthority

from umbra.config import ClientAuth, TlsSettings
from umbra.security.tls import (
    describe_tls_error,
    distinguished_name,
    principal_from_certificate,
    server_context,
)


class Pki:
    def __init__(self, directory: Path) -> None:
        self.ca = CertificateAuthority(directory)
        self.server = self.ca.issue_server()
        self.alice = self.ca.issue_client("alice")
        self.no_cn = self.ca.issue_client(None, organization="acme, inc.")
        self.mallory = CertificateAuthority(directory / "other", "other CA").issue_client("mallory")

    def settings(self, client_auth: ClientAuth) -> TlsSettings:
        return TlsSettings(self.server.cert_file, self.server.key_file, self.ca.cert_file, client_auth)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


def client_context(pki: Pki, cert: CertFiles | None = None,
                   maximum: ssl.TLSVersion = ssl.TLSVersion.MAXIMUM_SUPPORTED) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca.cert_file))
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    context.maximum_version = maximum
    if cert is not None:
        context.load_cert_chain(cert.cert_file, cert.key_file)
    return context


def handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> ssl.SSLObject:
    """Run a handshake in memory; returns the server's side, or raises the server's error."""
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client_side = client.wrap_bio(c_in, c_out, server_hostname="127.0.0.1")
    server_side = server.wrap_bio(s_in, s_out, server_side=True)
    client_done = server_done = False
    for _ in range(20):
        if not client_done:
            try:
                client_side.do_handshake()
                client_done = True
            except ssl.SSLWantReadError:
                pass
        s_in.write(c_out.read())
        if not server_done:
            try:
                server_side.do_handshake()
                server_done = True
            except ssl.SSLWantReadError:
                pass
        c_in.write(s_out.read())
        if client_done and server_done:
            # TLS 1.3: the server checks the client's certificate on the client's last flight; read once more
            try:
                server_side.read(1)
            except ssl.SSLWantReadError:
                pass
            return server_side
    raise AssertionError("the handshake did not finish")


def test_mtls_gives_the_common_name_as_principal(pki: Pki) -> None:
    server = handshake(server_context(pki.settings(ClientAuth.REQUIRED)), client_context(pki, pki.alice))
    assert principal_from_certificate(server.getpeercert()) == "User:alice"


def test_requested_lets_a_client_without_certificate_in_anonymously(pki: Pki) -> None:
    server = handshake(server_context(pki.settings(ClientAuth.REQUESTED)), client_context(pki))
    assert server.getpeercert() is None and principal_from_certificate(server.getpeercert()) is None
    server = handshake(server_context(pki.settings(ClientAuth.REQUESTED)), client_context(pki, pki.alice))
    assert principal_from_certificate(server.getpeercert()) == "User:alice"


def test_without_client_auth_no_certificate_is_asked_for(pki: Pki) -> None:
    server = handshake(server_context(pki.settings(ClientAuth.NONE)), client_context(pki, pki.alice))
    assert not server.getpeercert()


def test_a_certificate_without_cn_gives_the_distinguished_name(pki: Pki) -> None:
    server = handshake(server_context(pki.settings(ClientAuth.REQUIRED)), client_context(pki, pki.no_cn))
    assert principal_from_certificate(server.getpeercert()) == "User:O=acme\\, inc."


@pytest.mark.parametrize(("cert", "expected"), [
    (None, "the client sent no certificate (client_auth is required) (peer did not return a certificate)"),
    ("mallory", "its certificate is not trusted by ca_file (certificate verify failed: unable to get local issuer "
                "certificate)"),
])
def test_refused_client_certificates_are_said_in_one_line(pki: Pki, cert: str | None, expected: str) -> None:
    client = client_context(pki, getattr(pki, cert) if cert else None)
    with pytest.raises(ssl.SSLError) as raised:
        handshake(server_context(pki.settings(ClientAuth.REQUIRED)), client)
    assert describe_tls_error(raised.value) == expected


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_tls_below_1_2_is_refused(pki: Pki) -> None:
    context = server_context(pki.settings(ClientAuth.NONE))
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2
    handshake(context, client_context(pki, maximum=ssl.TLSVersion.TLSv1_2))  # 1.2 itself is fine
    old = client_context(pki, maximum=ssl.TLSVersion.TLSv1_1)
    old.set_ciphers("DEFAULT:@SECLEVEL=0")  # so that this OpenSSL offers 1.1 at all
    with pytest.raises(ssl.SSLError) as raised:
        handshake(context, old)
    assert describe_tls_error(raised.value).startswith("the client offers no TLS version umbra accepts")


def test_plaintext_on_a_tls_listener_is_named() -> None:
    error = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")
    error.reason = "WRONG_VERSION_NUMBER"  # what a Kafka request gives the server's handshake
    assert describe_tls_error(error) == "not a TLS client (plaintext on a TLS listener?) (wrong version number)"
    assert describe_tls_error(ConnectionResetError()) == "the client closed the connection during the handshake"
    assert describe_tls_error(ConnectionAbortedError("SSL handshake is taking longer than 10.0 seconds")) \
        == "SSL handshake is taking longer than 10.0 seconds"


@pytest.mark.parametrize(("subject", "expected"), [
    ((), ""),
    (((("countryName", "GB"),), (("organizationName", "acme"),), (("organizationalUnitName", "eng"),)),
     "OU=eng,O=acme,C=GB"),
    (((("organizationName", 'a,b+c"d\\e<f>g;h'),),), 'O=a\\,b\\+c\\"d\\\\e\\<f\\>g\\;h'),
    (((("organizationName", "#x "),),), "O=\\#x\\ "),
    (((("organizationName", " "),),), "O=\\ "),
    (((("domainComponent", "example"), ("userId", "42")),), "DC=example+UID=42"),
    (((("emailAddress", "a@example.com"),),), "emailAddress=a@example.com"),
])
def test_distinguished_names_are_rfc_2253(subject: tuple[tuple[tuple[str, str], ...], ...], expected: str) -> None:
    assert distinguished_name(subject) == expected


def test_principal_from_certificate_dicts() -> None:
    assert principal_from_certificate(None) is None
    assert principal_from_certificate({}) is None
    assert principal_from_certificate({"subject": ()}) is None
    several = {"subject": ((("commonName", "outer"),), (("commonName", "inner"),))}
    assert principal_from_certificate(several) == "User:inner"  # the most specific
