"""ACL bindings, filters (Kafka's matching semantics), validation, and the persistent AclStore."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import umbra.security.acls as acls_module
from umbra.errors import ErrorCode, InvalidRequest, KafkaStorageError
from umbra.security.acls import (
    MATCH_ALL,
    AclBinding,
    AclFilter,
    AclOperation,
    AclStore,
    AclStoreCorrupt,
    PatternType,
    PermissionType,
    ResourceType,
    validate_binding,
)

LITERAL, PREFIXED, MATCH, ANY = PatternType.LITERAL, PatternType.PREFIXED, PatternType.MATCH, PatternType.ANY
TOPIC, GROUP = ResourceType.TOPIC, ResourceType.GROUP
READ, WRITE = AclOperation.READ, AclOperation.WRITE
ALLOW, DENY = PermissionType.ALLOW, PermissionType.DENY


def acl(name: str = "orders", pattern: PatternType = LITERAL, principal: str = "User:alice", *,
        resource_type: ResourceType = TOPIC, host: str = "*", operation: AclOperation = READ,
        permission: PermissionType = ALLOW) -> AclBinding:
    return AclBinding(resource_type, name, pattern, principal, host, operation, permission)


# --- filter matching -----------------------------------------------------------------------------------------
EXACT = acl("orders")
WILDCARD = acl("*")
PREFIX_ORD = acl("ord", PREFIXED)
PREFIX_X = acl("x", PREFIXED)
OTHER_LITERAL = acl("payments")
BINDINGS = [EXACT, WILDCARD, PREFIX_ORD, PREFIX_X, OTHER_LITERAL]


def selected(acl_filter: AclFilter) -> list[AclBinding]:
    return [b for b in BINDINGS if acl_filter.matches(b)]


@pytest.mark.parametrize(("acl_filter", "expected"), [
    (MATCH_ALL, BINDINGS),
    # A concrete pattern type, or ANY, compares names exactly (ANY across pattern types).
    (AclFilter(TOPIC, "orders", LITERAL), [EXACT]),
    (AclFilter(TOPIC, "ord", LITERAL), []),
    (AclFilter(TOPIC, "ord", PREFIXED), [PREFIX_ORD]),
    (AclFilter(TOPIC, "ord", ANY), [PREFIX_ORD]),
    (AclFilter(TOPIC, "*", LITERAL), [WILDCARD]),
    (AclFilter(TOPIC, None, LITERAL), [EXACT, WILDCARD, OTHER_LITERAL]),
    (AclFilter(TOPIC, None, PREFIXED), [PREFIX_ORD, PREFIX_X]),
    # MATCH: every pattern that applies to a resource of that name.
    (AclFilter(TOPIC, "orders", MATCH), [EXACT, WILDCARD, PREFIX_ORD]),
    (AclFilter(TOPIC, "xyz", MATCH), [WILDCARD, PREFIX_X]),
    (AclFilter(TOPIC, "or", MATCH), [WILDCARD]),  # "ord" is not a prefix of "or"
    (AclFilter(TOPIC, None, MATCH), BINDINGS),
    # The resource type must agree unless it is ANY.
    (AclFilter(GROUP, "orders", MATCH), []),
    (AclFilter(ResourceType.ANY, "orders", MATCH), [EXACT, WILDCARD, PREFIX_ORD]),
])
def test_resource_pattern_filter(acl_filter: AclFilter, expected: list[AclBinding]) -> None:
    assert selected(acl_filter) == expected


def test_entry_filter_compares_principal_and_host_exactly() -> None:
    everyone = acl(principal="User:*", host="*")
    bob_on_host = acl(principal="User:bob", host="10.0.0.1", operation=WRITE, permission=DENY)
    bindings = [everyone, bob_on_host]
    assert [b for b in bindings if AclFilter(principal="User:bob").matches(b)] == [bob_on_host]
    assert [b for b in bindings if AclFilter(principal="User:*").matches(b)] == [everyone]
    assert [b for b in bindings if AclFilter(host="*").matches(b)] == [everyone]
    assert [b for b in bindings if AclFilter(operation=WRITE).matches(b)] == [bob_on_host]
    assert [b for b in bindings if AclFilter(permission_type=ALLOW).matches(b)] == [everyone]
    assert [b for b in bindings if AclFilter(operation=AclOperation.ALL).matches(b)] == []


def test_exact_filter_matches_only_its_binding() -> None:
    assert selected(AclFilter.exactly(PREFIX_ORD)) == [PREFIX_ORD]


@pytest.mark.parametrize("field", ["resource_type", "pattern_type", "operation", "permission_type"])
def test_filter_with_unknown_field_is_invalid(field: str) -> None:
    codes = {"resource_type": 1, "pattern_type": 1, "operation": 1, "permission_type": 1, field: 99}
    acl_filter = AclFilter.from_codes(codes["resource_type"], None, codes["pattern_type"], None, None,
                                      codes["operation"], codes["permission_type"])
    with pytest.raises(InvalidRequest, match="unknown"):
        acl_filter.validate()


# --- validation ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("binding", "message"), [
    (acl(resource_type=ResourceType.ANY), "resource type ANY"),
    (acl(resource_type=ResourceType.UNKNOWN), "resource type UNKNOWN"),
    (AclBinding.from_codes(42, "orders", 3, "User:alice", "*", 3, 3), "resource type UNKNOWN"),
    (acl(pattern=MATCH), "pattern type MATCH"),
    (acl(pattern=ANY), "pattern type ANY"),
    (acl(pattern=PatternType.UNKNOWN), "pattern type UNKNOWN"),
    (acl(operation=AclOperation.ANY), "operation ANY"),
    (acl(operation=AclOperation.UNKNOWN), "operation UNKNOWN"),
    (acl(permission=PermissionType.ANY), "permission type ANY"),
    (acl(permission=PermissionType.UNKNOWN), "permission type UNKNOWN"),
    (acl(""), "resource name"),
    (acl(principal="alice"), "Type:name"),
    (acl(principal="User:"), "Type:name"),
    (acl(principal=":alice"), "Type:name"),
    (acl(host=""), "host"),
])
def test_invalid_bindings_are_refused_with_a_message(binding: AclBinding, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message) as caught:
        validate_binding(binding)
    assert caught.value.code == ErrorCode.INVALID_REQUEST


@pytest.mark.parametrize("binding", [
    acl(), acl("*"), acl("ord", PREFIXED), acl(principal="User:*"), acl(principal="Group:ops:eu"),
    acl("kafka-cluster", resource_type=ResourceType.CLUSTER, operation=AclOperation.ALL, permission=DENY),
    acl("alice", resource_type=ResourceType.USER, operation=AclOperation.CREATE_TOKENS),
])
def test_valid_bindings(binding: AclBinding) -> None:
    validate_binding(binding)


# --- the store -----------------------------------------------------------------------------------------------
def test_add_is_idempotent_and_reports_per_binding(tmp_path: Path) -> None:
    store = AclStore(tmp_path)
    results = store.add([EXACT, acl(principal="nobody"), EXACT, PREFIX_ORD])
    assert results[0] is None and results[2] is None and results[3] is None
    assert isinstance(results[1], InvalidRequest) and "nobody" in results[1].message
    assert store.all() == [EXACT, PREFIX_ORD]
    assert store.add([PREFIX_ORD]) == [None]
    assert len(store) == 2


def test_store_survives_reinstantiation(tmp_path: Path) -> None:
    store = AclStore(tmp_path)
    store.add(BINDINGS)
    store.delete([AclFilter(pattern_type=PREFIXED, resource_name="x")])
    reopened = AclStore(tmp_path)
    assert reopened.all() == [EXACT, WILDCARD, PREFIX_ORD, OTHER_LITERAL]
    document = json.loads((tmp_path / "acls.json").read_text())
    assert document["acls"][0] == {"resource_type": "TOPIC", "resource_name": "orders", "pattern_type": "LITERAL",
                                   "principal": "User:alice", "host": "*", "operation": "READ",
                                   "permission_type": "ALLOW"}
    assert not (tmp_path / "acls.json.tmp").exists()


def test_describe_filters_and_validates(tmp_path: Path) -> None:
    store = AclStore(tmp_path)
    store.add(BINDINGS)
    assert store.describe(AclFilter(TOPIC, "orders", MATCH)) == [EXACT, WILDCARD, PREFIX_ORD]
    with pytest.raises(InvalidRequest):
        store.describe(AclFilter(operation=AclOperation.UNKNOWN))


def test_delete_reports_matches_per_filter(tmp_path: Path) -> None:
    store = AclStore(tmp_path)
    store.add(BINDINGS)
    matched = store.delete([AclFilter(TOPIC, "orders", MATCH), AclFilter(TOPIC, "ord", PREFIXED),
                            AclFilter(principal="User:nobody")])
    # Filters see the ACLs as they were when the request began: PREFIX_ORD is listed under both.
    assert matched == [[EXACT, WILDCARD, PREFIX_ORD], [PREFIX_ORD], []]
    assert store.all() == [PREFIX_X, OTHER_LITERAL]


def test_delete_with_an_invalid_filter_deletes_nothing(tmp_path: Path) -> None:
    store = AclStore(tmp_path)
    store.add(BINDINGS)
    with pytest.raises(InvalidRequest):
        store.delete([MATCH_ALL, AclFilter(pattern_type=PatternType.UNKNOWN)])
    assert store.all() == BINDINGS


def test_failed_write_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = AclStore(tmp_path)
    store.add([EXACT])

    def disk_full(path: Path, text: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(acls_module, "write_atomically", disk_full)
    results = store.add([EXACT, PREFIX_ORD])
    assert results[0] is None  # already stored: nothing to write
    assert isinstance(results[1], KafkaStorageError) and "No space" in results[1].message
    with pytest.raises(KafkaStorageError):
        store.delete([MATCH_ALL])
    assert store.all() == [EXACT]
    monkeypatch.undo()
    assert AclStore(tmp_path).all() == [EXACT]


@pytest.mark.parametrize("content", [
    "{not json",
    '{"version": 2, "acls": []}',
    '{"version": 1}',
    '{"version": 1, "acls": [{"resource_type": "TOPIC"}]}',
    '{"version": 1, "acls": [{"resource_type": "ANY", "resource_name": "t", "pattern_type": "LITERAL", '
    '"principal": "User:a", "host": "*", "operation": "READ", "permission_type": "ALLOW"}]}',
])
def test_unreadable_file_refuses_to_load(tmp_path: Path, content: str) -> None:
    (tmp_path / "acls.json").write_text(content)
    with pytest.raises(AclStoreCorrupt, match="acls.json"):
        AclStore(tmp_path)
