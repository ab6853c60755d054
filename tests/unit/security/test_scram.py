"""SCRAM-SHA-256/512 (RFC 5802, RFC 7677, Kafka's KIP-84): credentials, the server and client exchanges, and
every way an exchange fails."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest

from umbra.errors import ErrorCode
from umbra.security.scram import (
    SaslAuthenticationFailed,
    ScramClient,
    ScramCredential,
    ScramMechanism,
    ScramServer,
    derive_credential,
    escape_saslname,
    unescape_saslname,
)

SHA256, SHA512 = ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512
BOTH = pytest.mark.parametrize("mechanism", [SHA256, SHA512], ids=lambda m: m.value)

# RFC 7677 section 3: user "user", password "pencil"
RFC_SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
RFC_CLIENT_NONCE = "rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_NONCE = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
RFC_CLIENT_FIRST = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_FIRST = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
RFC_CLIENT_FINAL = (b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
RFC_SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
INVALID = "invalid credentials with SASL mechanism"


def users(*entries: tuple[str, ScramCredential]) -> Callable[[str], ScramCredential | None]:
    return dict(entries).get


def rfc_server() -> ScramServer:
    credential = derive_credential(SHA256, "pencil", RFC_SALT, 4096)
    return ScramServer(SHA256, users(("user", credential)), nonce=RFC_SERVER_NONCE)


def exchange(server: ScramServer, client: ScramClient) -> str:
    final, user = server.receive_client_final(client.client_final(server.receive_client_first(client.client_first())))
    client.verify_server_final(final)
    return user


# --- RFC 7677's test vector -----------------------------------------------------------------------------------
def test_the_rfc_7677_vector_server_side() -> None:
    server = rfc_server()
    assert server.receive_client_first(RFC_CLIENT_FIRST) == RFC_SERVER_FIRST
    assert server.receive_client_final(RFC_CLIENT_FINAL) == (RFC_SERVER_FINAL, "user")
    assert server.complete and server.username == "user"


def test_the_rfc_7677_vector_client_side() -> None:
    client = ScramClient(SHA256, "user", "pencil", nonce=RFC_CLIENT_NONCE)
    assert client.client_first() == RFC_CLIENT_FIRST
    assert client.client_final(RFC_SERVER_FIRST) == RFC_CLIENT_FINAL
    client.verify_server_final(RFC_SERVER_FINAL)
    assert client.complete


# --- round trips ------------------------------------------------------------------------------------------------
@BOTH
def test_client_and_server_agree(mechanism: ScramMechanism) -> None:
    credential = derive_credential(mechanism, "correct horse", iterations=8192)
    server = ScramServer(mechanism, users(("alice", credential)))
    client = ScramClient(mechanism, "alice", "correct horse")
    assert exchange(server, client) == "alice"
    assert server.complete and client.complete


@BOTH
def test_names_with_commas_and_equals_signs_are_escaped(mechanism: ScramMechanism) -> None:
    name = "a,b=c=2C"
    assert ScramClient(mechanism, name, "pw", nonce="x").client_first() == b"n,,n=a=2Cb=3Dc=3D2C,r=x"
    server = ScramServer(mechanism, users((name, derive_credential(mechanism, "pw"))))
    assert exchange(server, ScramClient(mechanism, name, "pw")) == name
    assert unescape_saslname(escape_saslname(name)) == name
    assert unescape_saslname("=3D2C") == "=2C"  # one escape at a time, left to right


def test_a_non_ascii_password_and_name_are_utf8() -> None:
    server = ScramServer(SHA256, users(("zoë", derive_credential(SHA256, "pässwörd"))))
    assert exchange(server, ScramClient(SHA256, "zoë", "pässwörd")) == "zoë"


def test_an_authzid_equal_to_the_user_is_accepted() -> None:
    server = rfc_server()
    assert server.receive_client_first(b"n,a=user,n=user,r=abc").startswith(b"r=abc")


def test_the_y_flag_is_accepted_and_bound_in_the_final_message() -> None:
    credential = derive_credential(SHA256, "pw")
    client = ScramClient(SHA256, "u", "pw", nonce="cn")
    server = ScramServer(SHA256, users(("u", credential)), nonce="sn")
    server_first = server.receive_client_first(b"y,,n=u,r=cn")
    client.client_first()
    final = client.client_final(server_first)  # c=biws ("n,,"): it does not match "y,,"
    with pytest.raises(SaslAuthenticationFailed, match="channel binding does not match"):
        server.receive_client_final(final)


def test_unknown_extensions_are_ignored_and_tokenauth_false_is_fine() -> None:
    server = rfc_server()
    server.receive_client_first(RFC_CLIENT_FIRST + b",foo=bar,tokenauth=false")


def test_client_extensions_are_sent() -> None:
    client = ScramClient(SHA256, "u", "pw", nonce="n1", extensions={"tokenauth": "true"})
    assert client.client_first() == b"n,,n=u,r=n1,tokenauth=true"
    with pytest.raises(ValueError, match="extension"):
        ScramClient(SHA256, "u", "pw", extensions={"to ken": "x"})


# --- the server's refusals --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("message", "expected"), [
    (b"", "no GS2 header"),
    (b"n", "no GS2 header"),
    (b"n,", "no GS2 header"),
    (b"p=tls-unique,,n=user,r=abc", "channel binding is not supported"),
    (b"x,,n=user,r=abc", "invalid GS2 flag"),
    (b"n,b=user,n=user,r=abc", "lacks a="),
    (b"n,a=other,n=user,r=abc", "authorization id must be the user name"),
    (b"n,,m=ext,n=user,r=abc", "mandatory extensions"),
    (b"n,,n=user", "needs n= and r="),
    (b"n,,r=abc,n=user", "lacks n="),
    (b"n,,n=user,x=abc", "lacks r="),
    (b"n,,n=,r=abc", "empty user name"),
    (b"n,,n=us=2Xer,r=abc", "invalid escape"),
    (b"n,,n=user=,r=abc", "invalid escape"),
    (b"n,,n=user,r=", "nonce is empty or not printable"),
    (b"n,,n=user,r=a\x7fb", "nonce is empty or not printable"),
    (b"n,,n=user,r=abc,tokenauth=true", "delegation tokens are not supported"),
    (b"n,,n=user,r=abc,tokenauth=TRUE", "delegation tokens are not supported"),
    (b"n,,n=user,r=abc,=x", "malformed extension"),
    (b"n,,n=user,r=abc,k=", "malformed extension"),
    (b"n,,n=\xff,r=abc", "not UTF-8"),
])
def test_bad_client_first_messages(message: bytes, expected: str) -> None:
    server = rfc_server()
    with pytest.raises(SaslAuthenticationFailed, match=expected) as failure:
        server.receive_client_first(message)
    assert failure.value.code == ErrorCode.SASL_AUTHENTICATION_FAILED
    with pytest.raises(SaslAuthenticationFailed, match="out of order .*failed"):  # the exchange is over
        server.receive_client_first(RFC_CLIENT_FIRST)


@pytest.mark.parametrize(("message", "expected"), [
    (b"", "needs c=, r= and p="),
    (b"c=biws,p=abc", "needs c=, r= and p="),
    (b"r=x,c=biws,p=abc", "lacks c="),
    (b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0", "needs c=, r= and p="),
    (b"c=!!!,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=abcd", "channel binding is not base64"),
    (b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=!!", "proof is not base64"),
    (b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,q=abcd", "lacks p="),
    (b"c=eSws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
     "channel binding does not match"),
    (b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k1,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
     "nonce does not match"),
    (b"c=biws,r=rOprNGfwEbeRWgbNEkqO,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", "nonce does not match"),
    (b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=AAAA", INVALID),  # a proof too short
    (b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
     INVALID),  # a wrong proof
    (b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,x,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
     "malformed extension"),
])
def test_bad_client_final_messages(message: bytes, expected: str) -> None:
    server = rfc_server()
    server.receive_client_first(RFC_CLIENT_FIRST)
    with pytest.raises(SaslAuthenticationFailed, match=expected):
        server.receive_client_final(message)
    with pytest.raises(SaslAuthenticationFailed, match="out of order"):
        server.receive_client_final(RFC_CLIENT_FINAL)  # even the right answer: the exchange is over
    assert not server.complete and server.username is None


def test_a_wrong_password_and_an_unknown_user_fail_alike() -> None:
    credential = derive_credential(SHA256, "right")
    failures = []
    for name, password in (("alice", "wrong"), ("mallory", "anything")):
        server = ScramServer(SHA256, users(("alice", credential)))
        client = ScramClient(SHA256, name, password)
        server_first = server.receive_client_first(client.client_first())  # an unknown user gets a salt too
        assert b",s=" in server_first and server_first.endswith(b",i=4096")
        with pytest.raises(SaslAuthenticationFailed) as failure:
            server.receive_client_final(client.client_final(server_first))
        failures.append(failure.value.message)
    assert failures[0] == failures[1]
    assert INVALID in failures[0]


def test_an_unknown_user_gets_the_same_salt_every_time() -> None:
    def salt_of(name: str) -> bytes:
        server_first = ScramServer(SHA512, users()).receive_client_first(f"n,,n={name},r=abc".encode())
        return server_first.split(b",")[1]

    assert salt_of("mallory") == salt_of("mallory") != salt_of("eve")


def test_a_credential_of_another_mechanism_is_no_credential() -> None:
    credential = derive_credential(SHA512, "pw")
    server = ScramServer(SHA256, users(("alice", credential)))
    with pytest.raises(SaslAuthenticationFailed, match=INVALID):
        exchange(server, ScramClient(SHA256, "alice", "pw"))


def test_messages_out_of_order() -> None:
    with pytest.raises(SaslAuthenticationFailed, match="client-final message out of order .*not started"):
        rfc_server().receive_client_final(RFC_CLIENT_FINAL)
    server = rfc_server()
    server.receive_client_first(RFC_CLIENT_FIRST)
    with pytest.raises(SaslAuthenticationFailed, match="client-first message out of order"):
        server.receive_client_first(RFC_CLIENT_FIRST)
    done = rfc_server()
    done.receive_client_first(RFC_CLIENT_FIRST)
    done.receive_client_final(RFC_CLIENT_FINAL)
    with pytest.raises(SaslAuthenticationFailed, match="out of order .*complete"):
        done.receive_client_final(RFC_CLIENT_FINAL)


# --- the client's refusals --------------------------------------------------------------------------------------
def rfc_client() -> ScramClient:
    client = ScramClient(SHA256, "user", "pencil", nonce=RFC_CLIENT_NONCE)
    client.client_first()
    return client


@pytest.mark.parametrize(("server_first", "expected"), [
    (b"m=x,r=rOprNGfwEbeRWgbNEkqOabc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", "requires an extension"),
    (b"r=rOprNGfwEbeRWgbNEkqOabc,s=W22ZaJ0SNY7soEsUEjb6gQ==", "needs r=, s= and i="),
    (b"r=someone-else,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", "does not extend"),
    (b"r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", "does not extend"),
    (b"r=rOprNGfwEbeRWgbNEkqOabc,s=,i=4096", "empty salt"),
    (b"r=rOprNGfwEbeRWgbNEkqOabc,s=%%%,i=4096", "salt is not base64"),
    (b"r=rOprNGfwEbeRWgbNEkqOabc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=x", "invalid iterations"),
    (b"r=rOprNGfwEbeRWgbNEkqOabc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4095", "asks for 4095 iterations"),
    (b"r=rOprNGfwEbeRWgbNEkqOabc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=100000000", "asks for 100000000 iterations"),
    (b"s=W22ZaJ0SNY7soEsUEjb6gQ==,r=rOprNGfwEbeRWgbNEkqOabc,i=4096", "lacks r="),
    (b"\xff", "not UTF-8"),
])
def test_bad_server_first_messages(server_first: bytes, expected: str) -> None:
    client = rfc_client()
    with pytest.raises(SaslAuthenticationFailed, match=expected):
        client.client_final(server_first)
    with pytest.raises(SaslAuthenticationFailed, match="out of order .*failed"):
        client.client_final(RFC_SERVER_FIRST)


@pytest.mark.parametrize(("server_final", "expected"), [
    (b"e=invalid-proof", "the server refused: invalid-proof"),
    (b"v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "signature is wrong"),
    (b"v=!!", "not base64"),
    (b"x=abc", "lacks v="),
])
def test_bad_server_final_messages(server_final: bytes, expected: str) -> None:
    client = rfc_client()
    client.client_final(RFC_SERVER_FIRST)
    with pytest.raises(SaslAuthenticationFailed, match=expected):
        client.verify_server_final(server_final)
    assert not client.complete


def test_client_messages_out_of_order() -> None:
    client = ScramClient(SHA256, "user", "pencil")
    with pytest.raises(SaslAuthenticationFailed, match="server-first message out of order"):
        client.client_final(RFC_SERVER_FIRST)
    client = rfc_client()
    with pytest.raises(SaslAuthenticationFailed, match="client-first message out of order"):
        client.client_first()
    with pytest.raises(ValueError, match="empty"):
        ScramClient(SHA256, "", "pw")


# --- credentials ------------------------------------------------------------------------------------------------
@BOTH
def test_a_credential_round_trips_through_json_and_hides_its_keys(mechanism: ScramMechanism) -> None:
    credential = derive_credential(mechanism, "pw", iterations=5000)
    assert ScramCredential.from_json(credential.to_json()) == credential
    assert credential.to_json()["mechanism"] == mechanism.value
    assert len(credential.stored_key) == len(credential.server_key) == mechanism.digest_size
    assert "stored_key" not in repr(credential) and "server_key" not in repr(credential)
    assert credential.matches_password("pw") and not credential.matches_password("pW")


def test_the_credential_from_a_salted_password_is_kafkas() -> None:
    salted = SHA256.salted_password("pencil", RFC_SALT, 4096)
    assert ScramCredential.from_salted_password(SHA256, RFC_SALT, salted, 4096) == derive_credential(
        SHA256, "pencil", RFC_SALT, 4096)
    with pytest.raises(ValueError, match="32 bytes, not 31"):
        ScramCredential.from_salted_password(SHA256, RFC_SALT, salted[:31], 4096)


@pytest.mark.parametrize(("iterations", "expected"), [(4095, "too few"), (16385, "too many"), (0, "too few")])
def test_iterations_outside_kafkas_bounds_are_refused(iterations: int, expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        derive_credential(SHA256, "pw", iterations=iterations)


def test_bounds_and_empty_inputs() -> None:
    assert derive_credential(SHA512, "pw", iterations=16384).iterations == 16384
    assert derive_credential(SHA512, "pw").iterations == 4096
    assert derive_credential(SHA512, "pw").salt != derive_credential(SHA512, "pw").salt
    with pytest.raises(ValueError, match="password is empty"):
        derive_credential(SHA256, "")
    with pytest.raises(ValueError, match="salt is empty"):
        derive_credential(SHA256, "pw", salt=b"")


@pytest.mark.parametrize(("data", "expected"), [
    ([], "JSON object"),
    ({"mechanism": "SCRAM-SHA-1"}, "unknown mechanism"),
    ({"mechanism": "SCRAM-SHA-256", "iterations": "4096"}, "not a number"),
    ({"mechanism": "SCRAM-SHA-256", "iterations": True}, "not a number"),
    ({"mechanism": "SCRAM-SHA-256", "iterations": 4096}, "salt is missing"),
    ({"mechanism": "SCRAM-SHA-256", "iterations": 4096, "salt": "%", "stored_key": "", "server_key": ""},
     "salt is not base64"),
    ({"mechanism": "SCRAM-SHA-256", "iterations": 4096, "salt": "AA==", "stored_key": "AA==", "server_key": "AA=="},
     "keys are 32 bytes"),
])
def test_bad_credential_json(data: object, expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        ScramCredential.from_json(data)


def test_mechanisms_by_name_and_code() -> None:
    assert [(m.value, m.type_code) for m in ScramMechanism] == [("SCRAM-SHA-256", 1), ("SCRAM-SHA-512", 2)]
    assert ScramMechanism.from_code(2) is SHA512 and ScramMechanism.from_code(0) is None
    assert ScramMechanism.from_name("SCRAM-SHA-256") is SHA256 and ScramMechanism.from_name("PLAIN") is None
