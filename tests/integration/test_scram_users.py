"""DescribeUserScramCredentials and AlterUserScramCredentials (KIP-554) against a real `umbra broker`, and
`umbra user` on its data directory.

Through confluent-kafka's AdminClient (librdkafka salts the password itself), kafka-python's KafkaAdminClient,
and raw v0 requests for every per-user error code. The users document holds salts and derived keys only.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import kafka.admin as kp
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)
from harness import BrokerProcess
from rawclient import RawConnection

from umbra.cluster.control import local_document_path, read_local_document
from umbra.errors import ErrorCode
from umbra.security.users import ScramUsers

TIMEOUT = 20.0
SHA256, SHA512 = ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512


def admin_client(broker: BrokerProcess) -> AdminClient:
    return AdminClient({"bootstrap.servers": broker.bootstrap})


def alter(admin: AdminClient, alterations: list[Any]) -> dict[str, Exception | None]:
    outcome: dict[str, Exception | None] = {}
    for user, future in admin.alter_user_scram_credentials(alterations, request_timeout=TIMEOUT).items():
        try:
            future.result(timeout=TIMEOUT)
            outcome[user] = None
        except KafkaException as exc:
            outcome[user] = exc
    return outcome


def described(admin: AdminClient, users: list[str]) -> dict[str, Any]:
    """user -> [(mechanism, iterations)], or the KafkaError code for that user."""
    result: dict[str, Any] = {}
    for user, future in admin.describe_user_scram_credentials(users, request_timeout=TIMEOUT).items():
        try:
            description = future.result(timeout=TIMEOUT)
            result[user] = sorted((i.mechanism, i.iterations) for i in description.scram_credential_infos)
        except KafkaException as exc:
            result[user] = exc.args[0].code()
    return result


def stored_users(broker: BrokerProcess) -> ScramUsers:
    return ScramUsers.from_document(read_local_document(broker.data_dir, "scram_users"))


def umbra_user(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "umbra", "user", *args], capture_output=True, text=True, timeout=60)


def test_confluent_admin_creates_describes_and_deletes_users(broker: BrokerProcess) -> None:
    admin = admin_client(broker)
    assert alter(admin, [
        UserScramCredentialUpsertion("alice", ScramCredentialInfo(SHA256, 8192), b"alice-password"),
        UserScramCredentialUpsertion("bob", ScramCredentialInfo(SHA512, 4096), b"bob-password"),
    ]) == {"alice": None, "bob": None}
    assert described(admin, ["alice", "bob"]) == {"alice": [(SHA256, 8192)], "bob": [(SHA512, 4096)]}
    everyone = admin.describe_user_scram_credentials(request_timeout=TIMEOUT).result(timeout=TIMEOUT)
    assert sorted(everyone) == ["alice", "bob"]

    # The broker derived the keys from librdkafka's salted password: the password logs in; it is not stored.
    text = local_document_path(broker.data_dir, "scram_users").read_text()
    assert "alice-password" not in text and "bob-password" not in text
    alice = stored_users(broker).credentials("alice")[0]
    assert alice.iterations == 8192 and alice.matches_password("alice-password")

    assert alter(admin, [UserScramCredentialDeletion("bob", SHA512)]) == {"bob": None}
    assert described(admin, ["bob", "alice"]) == {"bob": KafkaError.RESOURCE_NOT_FOUND, "alice": [(SHA256, 8192)]}
    outcome = alter(admin, [UserScramCredentialDeletion("nobody", SHA256)])
    assert outcome["nobody"] is not None and outcome["nobody"].args[0].code() == KafkaError.RESOURCE_NOT_FOUND


def test_kafka_python_admin_creates_and_describes_users(broker: BrokerProcess) -> None:
    admin = kp.KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=int(TIMEOUT * 1000))
    try:
        assert admin.alter_user_scram_credentials([
            kp.UserScramCredentialUpsertion("carol", "SCRAM-SHA-512", "carol-password", iterations=5000),
        ]) == {"carol": None}
        result = admin.describe_user_scram_credentials(["carol", "dave"])
        assert result["carol"] == {"error": None, "credential_infos": [
            {"mechanism": kp.ScramMechanism.SCRAM_SHA_512, "iterations": 5000}]}
        assert result["dave"]["error"] and not result["dave"]["credential_infos"]
        assert list(admin.describe_user_scram_credentials()) == ["carol"]
        outcome = admin.alter_user_scram_credentials([kp.UserScramCredentialDeletion("carol", "SCRAM-SHA-512")])
        assert outcome == {"carol": None}
    finally:
        admin.close()
    assert len(stored_users(broker)) == 0


def test_every_error_code_over_raw_requests(broker: BrokerProcess) -> None:
    ok256, ok512 = b"s" * 32, b"s" * 64  # salted passwords of the right sizes
    with RawConnection(broker.host, broker.port or 0) as conn:
        response = conn.request(51, 0, deletions=[("gone", 1), ("erin", 9), ("twice", 1)], upsertions=[
            ("erin", 1, 4096, b"salt", ok256),  # named twice: DUPLICATE_RESOURCE, nothing changes
            ("frank", 1, 4095, b"salt", ok256),
            ("frank2", 2, 16385, b"salt", ok512),
            ("gina", 3, 4096, b"salt", ok256),
            ("hank", 1, 4096, b"salt", b"short"),
            ("", 1, 4096, b"salt", ok256),
            ("ivy", 2, 4096, b"salt", ok512),
            ("twice", 2, 4096, b"salt", ok512),
        ])
        codes = {r.user: r.error_code for r in response.results}
        assert codes == {"gone": ErrorCode.RESOURCE_NOT_FOUND, "erin": ErrorCode.DUPLICATE_RESOURCE,
                         "twice": ErrorCode.DUPLICATE_RESOURCE, "frank": ErrorCode.UNACCEPTABLE_CREDENTIAL,
                         "frank2": ErrorCode.UNACCEPTABLE_CREDENTIAL, "gina": ErrorCode.UNSUPPORTED_SASL_MECHANISM,
                         "hank": ErrorCode.UNACCEPTABLE_CREDENTIAL, "": ErrorCode.UNACCEPTABLE_CREDENTIAL, "ivy": 0}
        assert all(r.error_message for r in response.results if r.error_code)
        response = conn.request(50, 0, users=[("ivy",), ("nobody",), ("ivy",)])
        assert response.error_code == 0
        assert {r.user: r.error_code for r in response.results} == {
            "ivy": ErrorCode.DUPLICATE_RESOURCE, "nobody": ErrorCode.RESOURCE_NOT_FOUND}
        response = conn.request(50, 0, users=None)
        assert [(r.user, [(c.mechanism, c.iterations) for c in r.credential_infos]) for r in response.results] == [
            ("ivy", [(2, 4096)])]
        versions = {k.api_key: (k.min_version, k.max_version) for k in conn.request(18, 0).api_keys}
        assert versions[50] == (0, 0) and versions[51] == (0, 0)


def test_a_user_created_offline_is_there_when_the_broker_starts(broker_factory: Any, tmp_path: Path) -> None:
    broker: BrokerProcess = broker_factory("offline", start=False)
    broker.data_dir.mkdir(parents=True)
    password_file = tmp_path / "password"
    password_file.write_text("alice-password\n")
    created = umbra_user("create", "alice", "--mechanism", "SCRAM-SHA-512", "--password-file", str(password_file),
                         "--data-dir", str(broker.data_dir))
    assert created.returncode == 0, created.stderr
    broker.start()
    admin = admin_client(broker)
    assert described(admin, ["alice"]) == {"alice": [(SHA512, 4096)]}

    refused = umbra_user("create", "bob", "--mechanism", "SCRAM-SHA-256", "--password-file", str(password_file),
                         "--data-dir", str(broker.data_dir))
    assert refused.returncode == 2 and "in use by a running broker" in refused.stderr

    assert alter(admin, [UserScramCredentialUpsertion("bob", ScramCredentialInfo(SHA256, 4096), b"pw")]) == {
        "bob": None}
    assert broker.stop() == 0
    listed = umbra_user("list", "--data-dir", str(broker.data_dir))
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout == "alice  SCRAM-SHA-512 (4096 iterations)\nbob  SCRAM-SHA-256 (4096 iterations)\n"
    assert "alice-password" not in local_document_path(broker.data_dir, "scram_users").read_text()
    broker.start()  # restarted: the users are read again
    assert described(admin_client(broker), ["alice", "bob"]) == {"alice": [(SHA512, 4096)], "bob": [(SHA256, 4096)]}


def test_an_upsertion_replaces_a_password(broker: BrokerProcess) -> None:
    admin = admin_client(broker)
    for password in (b"first", b"second"):
        assert alter(admin, [UserScramCredentialUpsertion("jo", ScramCredentialInfo(SHA256, 4096), password),
                             UserScramCredentialUpsertion("kim", ScramCredentialInfo(SHA512, 4096), password)]) == {
            "jo": None, "kim": None}
    for name in ("jo", "kim"):
        credential = stored_users(broker).credentials(name)[0]
        assert credential.matches_password("second") and not credential.matches_password("first")
