"""The SCRAM users document, and the rules of AlterUserScramCredentials and DescribeUserScramCredentials
(KIP-554) as pure functions."""

from __future__ import annotations

import json

import pytest

from umbra.errors import ErrorCode, KafkaError
from umbra.security.scram import ScramMechanism, derive_credential
from umbra.security.users import (
    CredentialDeletion,
    CredentialUpsertion,
    ScramUsers,
    ScramUsersCache,
    ScramUsersCorrupt,
    describe_users,
    plan_alter,
    validate_user_name,
)

SHA256, SHA512 = ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512
SALT = b"0123456789abcdef"


def upsert(name: str, mechanism_code: int = 1, iterations: int = 4096, password: str = "pw",
           salt: bytes = SALT) -> CredentialUpsertion:
    mechanism = ScramMechanism.from_code(mechanism_code) or SHA256
    return CredentialUpsertion(name, mechanism_code, iterations, salt,
                               mechanism.salted_password(password, salt or b"x", max(iterations, 1)))


def sample() -> ScramUsers:
    return (ScramUsers().with_credential("alice", derive_credential(SHA256, "a"))
            .with_credential("alice", derive_credential(SHA512, "a", iterations=8192))
            .with_credential("bob", derive_credential(SHA256, "b")))


def codes(results: list[tuple[str, KafkaError | None]]) -> dict[str, int]:
    return {name: 0 if error is None else int(error.code) for name, error in results}


# --- the value and its document -------------------------------------------------------------------------------
def test_the_document_round_trips_and_holds_no_password() -> None:
    users = sample()
    document = users.to_document()
    assert ScramUsers.from_document(json.loads(json.dumps(document))) == users
    assert document["version"] == 1
    alice = document["users"]["alice"]  # type: ignore[index]
    assert set(alice) == {"SCRAM-SHA-256", "SCRAM-SHA-512"}
    assert set(alice["SCRAM-SHA-512"]) == {"salt", "iterations", "stored_key", "server_key"}
    assert alice["SCRAM-SHA-512"]["iterations"] == 8192


def test_reads_and_changes() -> None:
    users = sample()
    assert users.names() == ["alice", "bob"] and len(users) == 2 and "bob" in users
    assert [c.mechanism for c in users.credentials("alice")] == [SHA256, SHA512]
    assert users.credentials("carol") == [] and users.credential("bob", SHA512) is None
    assert users.lookup(SHA256)("bob") is users.credential("bob", SHA256)
    assert users.without("alice", SHA256).credentials("alice")[0].mechanism is SHA512
    assert "alice" not in users.without("alice") and "bob" not in users.without("bob", SHA256)
    assert users.without("nobody") == users
    assert ScramUsers.from_document(None) == ScramUsers()


@pytest.mark.parametrize(("document", "expected"), [
    ([], "not a version 1 users document"),
    ({"version": 2, "users": {}}, "not a version 1"),
    ({"version": 1}, "no users object"),
    ({"version": 1, "users": {"": {}}}, "must not be empty"),
    ({"version": 1, "users": {"a": {}}}, "no credentials"),
    ({"version": 1, "users": {"a": {"SCRAM-SHA-256": 3}}}, "not a JSON object"),
    ({"version": 1, "users": {"a": {"SCRAM-SHA-256": {"iterations": 4096}}}}, "salt is missing"),
    ({"version": 1, "users": {"a": {"SCRAM-SHA-1": {}}}}, "unknown mechanism"),
])
def test_an_unreadable_document_says_why(document: object, expected: str) -> None:
    with pytest.raises(ScramUsersCorrupt, match=expected):
        ScramUsers.from_document(document)


@pytest.mark.parametrize(("name", "expected"), [
    ("", "must not be empty"), ("x" * 256, "at most 255"), ("a\0b", "control character"), ("a\nb", "control"),
])
def test_bad_user_names(name: str, expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        validate_user_name(name)
    validate_user_name("x" * 255)
    validate_user_name("User,with=odd chars é")


def test_the_cache_parses_each_version_once() -> None:
    cache = ScramUsersCache()
    document = sample().to_document()
    first = cache.users(document)
    assert cache.users(document) is first
    assert cache.users(None) == ScramUsers()
    assert cache.users(json.loads(json.dumps(document))) == first


# --- AlterUserScramCredentials --------------------------------------------------------------------------------
def test_upsertions_and_deletions_apply() -> None:
    results, updated = plan_alter(sample(), [CredentialDeletion("alice", 2)], [upsert("carol", 2, 10000)])
    assert codes(results) == {"alice": 0, "carol": 0}
    assert [c.mechanism for c in updated.credentials("alice")] == [SHA256]
    carol = updated.credential("carol", SHA512)
    assert carol is not None and carol.iterations == 10000 and carol.salt == SALT and carol.matches_password("pw")


def test_an_upsertion_replaces_the_mechanisms_credential() -> None:
    results, updated = plan_alter(sample(), [], [upsert("bob", 1, password="new")])
    credential = updated.credential("bob", SHA256)
    assert codes(results) == {"bob": 0} and credential is not None and credential.matches_password("new")


def test_deleting_the_last_credential_deletes_the_user() -> None:
    _, updated = plan_alter(sample(), [CredentialDeletion("bob", 1)], [])
    assert "bob" not in updated


@pytest.mark.parametrize(("deletions", "upsertions", "expected"), [
    ([CredentialDeletion("carol", 1)], [], ErrorCode.RESOURCE_NOT_FOUND),
    ([CredentialDeletion("bob", 2)], [], ErrorCode.RESOURCE_NOT_FOUND),
    ([CredentialDeletion("bob", 3)], [], ErrorCode.UNSUPPORTED_SASL_MECHANISM),
    ([CredentialDeletion("bob", 0)], [], ErrorCode.UNSUPPORTED_SASL_MECHANISM),
    ([], [upsert("bob", 0)], ErrorCode.UNSUPPORTED_SASL_MECHANISM),
    ([], [upsert("bob", 1, 4095)], ErrorCode.UNACCEPTABLE_CREDENTIAL),
    ([], [upsert("bob", 1, 16385)], ErrorCode.UNACCEPTABLE_CREDENTIAL),
    ([], [upsert("bob", 1, salt=b"")], ErrorCode.UNACCEPTABLE_CREDENTIAL),
    ([], [CredentialUpsertion("bob", 1, 4096, SALT, b"short")], ErrorCode.UNACCEPTABLE_CREDENTIAL),
    ([], [upsert("", 1)], ErrorCode.UNACCEPTABLE_CREDENTIAL),
    ([CredentialDeletion("", 1)], [], ErrorCode.UNACCEPTABLE_CREDENTIAL),
    ([], [upsert("bob", 1), upsert("bob", 2)], ErrorCode.DUPLICATE_RESOURCE),
    ([CredentialDeletion("bob", 1)], [upsert("bob", 2)], ErrorCode.DUPLICATE_RESOURCE),
    ([CredentialDeletion("bob", 1), CredentialDeletion("bob", 1)], [], ErrorCode.DUPLICATE_RESOURCE),
])
def test_each_refusal_changes_nothing_of_that_user(deletions: list[CredentialDeletion],
                                                     upsertions: list[CredentialUpsertion], expected: ErrorCode) -> None:
    users = sample()
    results, updated = plan_alter(users, deletions, [*upsertions, upsert("dave")])
    assert codes(results) == {(deletions or upsertions)[0].name: expected, "dave": 0}
    error = dict(results)[(deletions or upsertions)[0].name]
    assert error is not None and error.message
    assert updated.without("dave") == users  # dave, in the same request, is created all the same


def test_results_come_once_per_user_in_the_order_first_named() -> None:
    results, _ = plan_alter(sample(), [CredentialDeletion("bob", 1), CredentialDeletion("zed", 1)],
                            [upsert("amy"), upsert("bob")])
    assert [name for name, _ in results] == ["bob", "zed", "amy"]
    assert codes(results) == {"bob": ErrorCode.DUPLICATE_RESOURCE, "zed": ErrorCode.RESOURCE_NOT_FOUND, "amy": 0}


# --- DescribeUserScramCredentials -----------------------------------------------------------------------------
def test_describing_everyone_and_some() -> None:
    everyone = describe_users(sample(), None)
    assert [(d.name, d.error, d.credentials) for d in everyone] == [
        ("alice", None, ((SHA256, 4096), (SHA512, 8192))), ("bob", None, ((SHA256, 4096),))]
    assert [d.name for d in describe_users(sample(), [])] == ["alice", "bob"]
    described = describe_users(sample(), ["bob", "carol", "alice", "alice"])
    assert [(d.name, None if d.error is None else d.error.code) for d in described] == [
        ("bob", None), ("carol", ErrorCode.RESOURCE_NOT_FOUND), ("alice", ErrorCode.DUPLICATE_RESOURCE)]
    assert described[1].credentials == () and described[2].credentials == ()
