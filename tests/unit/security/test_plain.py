"""SASL/PLAIN (RFC 4616) checked against the SCRAM users' credentials."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from umbra.security.plain import INVALID_CREDENTIALS, authenticate_plain, parse_plain
from umbra.security.scram import SaslAuthenticationFailed, ScramCredential, ScramMechanism, derive_credential

SHA256, SHA512 = ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512
ALICE = [derive_credential(SHA256, "s3cret"), derive_credential(SHA512, "other")]


def credentials_of(name: str) -> Sequence[ScramCredential]:
    return ALICE if name == "alice" else []


def test_a_message_parses_into_its_three_parts() -> None:
    message = parse_plain(b"alice\0alice\0pwrd")
    assert (message.authzid, message.username, message.password) == ("alice", "alice", "pwrd")
    assert "pwrd" not in repr(message)
    assert parse_plain("\0zoë\0pässwörd".encode()).username == "zoë"


@pytest.mark.parametrize(("message", "expected"), [
    (b"", "expected 3 tokens, got 1"),
    (b"alice\0pw", "expected 3 tokens, got 2"),
    (b"\0alice\0pw\0", "expected 3 tokens, got 4"),
    (b"\0\0pw", "username not specified"),
    (b"\0alice\0", "password not specified"),
    (b"bob\0alice\0pw", "authorization id must be the user name"),
    (b"\0al\xffice\0pw", "not UTF-8"),
])
def test_malformed_messages_are_refused(message: bytes, expected: str) -> None:
    with pytest.raises(SaslAuthenticationFailed, match=expected):
        parse_plain(message)


def test_the_password_of_any_of_the_users_credentials_authenticates() -> None:
    assert authenticate_plain(b"\0alice\0s3cret", credentials_of) == "alice"
    assert authenticate_plain(b"alice\0alice\0other", credentials_of) == "alice"


def test_a_wrong_password_and_an_unknown_user_fail_alike() -> None:
    failures = []
    for message in (b"\0alice\0wrong", b"\0mallory\0s3cret"):
        with pytest.raises(SaslAuthenticationFailed) as failure:
            authenticate_plain(message, credentials_of)
        failures.append(failure.value.message)
    assert failures == [INVALID_CREDENTIALS, INVALID_CREDENTIALS]
