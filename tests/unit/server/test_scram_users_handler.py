"""The DescribeUserScramCredentials and AlterUserScramCredentials handlers over a single broker's control
plane, with requests as the codec decodes them from the wire (nulls where the schema has none included)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from umbra.cluster.control import LocalControlPlane, local_document_path, write_local_document
from umbra.errors import ErrorCode
from umbra.protocol.codec import SCHEMAS, RequestHeader, build_response
from umbra.security.scram import ScramMechanism
from umbra.server.handlers import RequestContext
from umbra.server.handlers.scram_users import (
    handle_alter_user_scram_credentials,
    handle_describe_user_scram_credentials,
)

SHA512 = ScramMechanism.SCRAM_SHA_512


def context(control: LocalControlPlane, api_key: int) -> RequestContext:
    broker: Any = SimpleNamespace(control=control, authorizer=None)  # authorization off
    return RequestContext(broker, RequestHeader(api_key, 0, 1, "test"), "127.0.0.1:1", 1)


def call(control: LocalControlPlane, api_key: int, request: Any) -> Any:
    handler = handle_alter_user_scram_credentials if api_key == 51 else handle_describe_user_scram_credentials
    fields = asyncio.run(handler(context(control, api_key), request))
    response = build_response(api_key, 0, fields)
    return SCHEMAS[api_key].response[0].decode(bytes(response.encode(version=0)))  # it encodes: a client reads it


def wire(api_key: int, **fields: Any) -> Any:
    """The request as the broker gets it: encoded, then decoded."""
    request = SCHEMAS[api_key].request[0]
    return request.decode(bytes(request(**fields).encode()))


def alter(control: LocalControlPlane, **fields: Any) -> Any:
    return call(control, 51, wire(51, **{"deletions": [], "upsertions": [], **fields}))


def test_alter_then_describe(tmp_path: Path) -> None:
    control = LocalControlPlane("c", 1, tmp_path)
    salted = SHA512.salted_password("pw", b"salt", 4096)
    response = alter(control, upsertions=[("alice", 2, 4096, b"salt", salted)])
    assert [(r.user, r.error_code, r.error_message) for r in response.results] == [("alice", 0, None)]
    assert "pw" not in local_document_path(tmp_path, "scram_users").read_text()
    described = call(control, 50, wire(50, users=None))
    assert described.error_code == 0
    assert [(r.user, r.error_code, [(c.mechanism, c.iterations) for c in r.credential_infos])
            for r in described.results] == [("alice", 0, [(2, 4096)])]


def test_nothing_valid_writes_nothing(tmp_path: Path) -> None:
    control = LocalControlPlane("c", 1, tmp_path)
    response = alter(control, deletions=[("nobody", 1)], upsertions=[("x", 7, 4096, b"s", b"p")])
    assert [(r.user, r.error_code) for r in response.results] == [
        ("nobody", ErrorCode.RESOURCE_NOT_FOUND), ("x", ErrorCode.UNSUPPORTED_SASL_MECHANISM)]
    assert not local_document_path(tmp_path, "scram_users").exists()


def test_null_names_and_arrays_from_the_wire_are_answered(tmp_path: Path) -> None:
    control = LocalControlPlane("c", 1, tmp_path)
    # deletions: one with a null name; upsertions: an empty array (compact encodings, flexible v0)
    request = SCHEMAS[51].request[0].decode(bytes.fromhex("020001000100"))
    response = call(control, 51, request)
    assert [(r.user, r.error_code) for r in response.results] == [("", ErrorCode.UNACCEPTABLE_CREDENTIAL)]
    described = call(control, 50, SCHEMAS[50].request[0].decode(bytes.fromhex("02000000")))
    assert [(r.user, r.error_code) for r in described.results] == [("", ErrorCode.RESOURCE_NOT_FOUND)]


def test_an_unreadable_document_is_an_error_not_a_crash(tmp_path: Path) -> None:
    write_local_document(tmp_path, "scram_users", {"version": 99})
    control = LocalControlPlane("c", 1, tmp_path)
    described = call(control, 50, wire(50, users=None))
    assert described.error_code == ErrorCode.UNKNOWN_SERVER_ERROR and "version 1" in described.error_message
    salted = SHA512.salted_password("pw", b"salt", 4096)
    response = alter(control, upsertions=[("alice", 2, 4096, b"salt", salted)])
    assert [(r.user, r.error_code) for r in response.results] == [("alice", ErrorCode.UNKNOWN_SERVER_ERROR)]


def test_a_failed_write_is_a_storage_error_and_changes_nothing(tmp_path: Path) -> None:
    control = LocalControlPlane("c", 1, tmp_path)
    (tmp_path / "documents").write_text("a file where the directory should be")
    salted = SHA512.salted_password("pw", b"salt", 4096)
    response = alter(control, upsertions=[("alice", 2, 4096, b"salt", salted)])
    assert [(r.user, r.error_code) for r in response.results] == [("alice", ErrorCode.KAFKA_STORAGE_ERROR)]
    assert control.document("scram_users") is None
