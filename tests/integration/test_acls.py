"""CreateAcls, DescribeAcls and DeleteAcls against a real `umbra broker`.

Through confluent-kafka's AdminClient, kafka-python's kp.KafkaAdminClient, and raw v0 requests: filters
(literal, prefixed, ANY and MATCH), per-item errors with messages, idempotent creation, and ACLs that
survive a restart. ACLs are stored and served; nothing is authorized against them yet.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import kafka.admin as kp
import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)
from harness import BrokerProcess
from kafka.protocol.admin import CreateAclsRequest, DeleteAclsRequest
from rawclient import RawConnection

TIMEOUT = 20.0
ANY_FILTER = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY,
                              AclPermissionType.ANY)


def binding(name: str, pattern: ResourcePatternType = ResourcePatternType.LITERAL, principal: str = "User:alice",
            resource_type: ResourceType = ResourceType.TOPIC, operation: AclOperation = AclOperation.READ,
            permission: AclPermissionType = AclPermissionType.ALLOW, host: str = "*") -> AclBinding:
    return AclBinding(resource_type, name, pattern, principal, host, operation, permission)


def acl_filter(resource_type: ResourceType = ResourceType.ANY, name: str | None = None,
               pattern: ResourcePatternType = ResourcePatternType.ANY, principal: str | None = None,
               operation: AclOperation = AclOperation.ANY) -> AclBindingFilter:
    return AclBindingFilter(resource_type, name, pattern, principal, None, operation, AclPermissionType.ANY)


def key(b: AclBinding) -> tuple[Any, ...]:
    return (b.restype, b.name, b.resource_pattern_type, b.principal, b.host, b.operation, b.permission_type)


def keys(bindings: list[AclBinding]) -> set[tuple[Any, ...]]:
    return {key(b) for b in bindings}


def create(admin: AdminClient, bindings: list[AclBinding]) -> None:
    for future in admin.create_acls(bindings, request_timeout=TIMEOUT).values():
        future.result(timeout=TIMEOUT)


def describe(admin: AdminClient, acl_filter: AclBindingFilter) -> set[tuple[Any, ...]]:
    return keys(admin.describe_acls(acl_filter, request_timeout=TIMEOUT).result(timeout=TIMEOUT))


@pytest.fixture
def admin(broker: BrokerProcess) -> AdminClient:
    return AdminClient({"bootstrap.servers": broker.bootstrap})


@pytest.fixture
def kafka_python_admin(broker: BrokerProcess) -> Iterator[kp.KafkaAdminClient]:
    client = kp.KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=int(TIMEOUT * 1000))
    yield client
    client.close()


ORDERS = binding("orders")
WILDCARD = binding("*", principal="User:*", operation=AclOperation.DESCRIBE)
PREFIX_ORD = binding("ord", ResourcePatternType.PREFIXED, principal="User:bob", operation=AclOperation.WRITE,
                     permission=AclPermissionType.DENY, host="10.0.0.1")
PAYMENTS = binding("payments")
GROUP = binding("billing", resource_type=ResourceType.GROUP)
CLUSTER = binding("kafka-cluster", resource_type=ResourceType.BROKER,  # confluent-kafka calls CLUSTER (4) BROKER
                   operation=AclOperation.ALTER_CONFIGS)
ALL = [ORDERS, WILDCARD, PREFIX_ORD, PAYMENTS, GROUP, CLUSTER]


def test_api_versions_advertise_acl_apis(broker: BrokerProcess) -> None:
    with RawConnection(broker.host, broker.port or 0) as conn:
        response = conn.request(18, 3, client_software_name="test", client_software_version="1")
    advertised = {k.api_key: (k.min_version, k.max_version) for k in response.api_keys}
    assert advertised[29] == advertised[30] == advertised[31] == (0, 3)


def test_create_describe_delete_with_confluent(admin: AdminClient) -> None:
    create(admin, ALL)
    assert describe(admin, ANY_FILTER) == keys(ALL)
    # Concrete pattern types and ANY compare names exactly.
    assert describe(admin, acl_filter(ResourceType.TOPIC, "orders", ResourcePatternType.LITERAL)) == keys([ORDERS])
    assert describe(admin, acl_filter(ResourceType.TOPIC, "ord", ResourcePatternType.LITERAL)) == set()
    assert describe(admin, acl_filter(ResourceType.TOPIC, "ord", ResourcePatternType.PREFIXED)) == keys([PREFIX_ORD])
    assert describe(admin, acl_filter(ResourceType.ANY, None, ResourcePatternType.PREFIXED)) == keys([PREFIX_ORD])
    assert describe(admin, acl_filter(ResourceType.TOPIC, "ord", ResourcePatternType.ANY)) == keys([PREFIX_ORD])
    # MATCH: every ACL that applies to topic "orders" (literal name, literal '*', prefix "ord").
    assert (describe(admin, acl_filter(ResourceType.TOPIC, "orders", ResourcePatternType.MATCH))
            == keys([ORDERS, WILDCARD, PREFIX_ORD]))
    assert describe(admin, acl_filter(ResourceType.GROUP)) == keys([GROUP])
    assert describe(admin, acl_filter(principal="User:alice")) == keys([ORDERS, PAYMENTS, GROUP, CLUSTER])
    assert describe(admin, acl_filter(operation=AclOperation.WRITE)) == keys([PREFIX_ORD])

    futures = admin.delete_acls([acl_filter(ResourceType.TOPIC, "orders", ResourcePatternType.MATCH),
                                 acl_filter(ResourceType.GROUP, "nothing-here")], request_timeout=TIMEOUT)
    deleted = [keys(future.result(timeout=TIMEOUT)) for future in futures.values()]
    assert deleted == [keys([ORDERS, WILDCARD, PREFIX_ORD]), set()]
    assert describe(admin, ANY_FILTER) == keys([PAYMENTS, GROUP, CLUSTER])


def test_creating_twice_stores_one_acl(admin: AdminClient) -> None:
    create(admin, [ORDERS])
    create(admin, [ORDERS, PAYMENTS])  # confluent-kafka refuses duplicates within one call
    assert len(admin.describe_acls(ANY_FILTER, request_timeout=TIMEOUT).result(timeout=TIMEOUT)) == 2


@pytest.mark.parametrize(("bad", "message"), [
    (binding("orders", principal="alice"), "expected Type:name"),
    (binding("orders", principal="User:"), "expected Type:name"),
    (binding(""), "resource name"),
    (binding("orders", host=""), "host"),
])
def test_bad_acl_is_refused_with_a_message(admin: AdminClient, bad: AclBinding, message: str) -> None:
    futures = admin.create_acls([PAYMENTS, bad], request_timeout=TIMEOUT)
    futures[PAYMENTS].result(timeout=TIMEOUT)
    with pytest.raises(KafkaException) as caught:
        futures[bad].result(timeout=TIMEOUT)
    error: KafkaError = caught.value.args[0]
    assert error.code() == KafkaError.INVALID_REQUEST
    assert message in error.str()
    assert describe(admin, ANY_FILTER) == keys([PAYMENTS])


def test_kafka_python_admin_client(kafka_python_admin: kp.KafkaAdminClient) -> None:
    client = kafka_python_admin
    read_orders = kp.ACL("User:carol", "*", kp.ACLOperation.READ, kp.ACLPermissionType.ALLOW,
                         kp.ResourcePattern(kp.ResourceType.TOPIC, "orders"))
    write_prefix = kp.ACL("User:carol", "*", kp.ACLOperation.WRITE, kp.ACLPermissionType.ALLOW,
                          kp.ResourcePattern(kp.ResourceType.TOPIC, "ord", kp.ACLResourcePatternType.PREFIXED))
    no_colon = kp.ACL("carol", "*", kp.ACLOperation.READ, kp.ACLPermissionType.ALLOW,
                      kp.ResourcePattern(kp.ResourceType.TOPIC, "orders"))
    result = client.create_acls([read_orders, write_prefix, no_colon])
    assert result["succeeded"] == [read_orders, write_prefix]
    assert [error.errno for error in result["failed"]] == [KafkaError.INVALID_REQUEST]

    def matching(name: str | None, pattern: kp.ACLResourcePatternType) -> kp.ACLFilter:
        return kp.ACLFilter(None, None, kp.ACLOperation.ANY, kp.ACLPermissionType.ANY,
                            kp.ResourcePatternFilter(kp.ResourceType.ANY, name, pattern))

    found, _ = client.describe_acls(matching(None, kp.ACLResourcePatternType.ANY))
    assert set(found) == {read_orders, write_prefix}
    found, _ = client.describe_acls(matching("orders-eu", kp.ACLResourcePatternType.MATCH))
    assert found == [write_prefix]

    [(_, deleted, error)] = client.delete_acls([matching(None, kp.ACLResourcePatternType.PREFIXED)])
    assert deleted == [write_prefix] and error.errno == 0
    found, _ = client.describe_acls(matching(None, kp.ACLResourcePatternType.ANY))
    assert found == [read_orders]


def _creation(name: str, pattern: int = 3, **overrides: Any) -> Any:
    fields = {"resource_type": 2, "resource_name": name, "resource_pattern_type": pattern,
              "principal": "User:dave", "host": "*", "operation": 3, "permission_type": 3}
    return CreateAclsRequest.AclCreation(**{**fields, **overrides})


def _filter_fields(**overrides: Any) -> dict[str, Any]:
    fields = {"resource_type_filter": 1, "resource_name_filter": None, "pattern_type_filter": 1,
              "principal_filter": None, "host_filter": None, "operation": 1, "permission_type": 1}
    return {**fields, **overrides}


def _filter(**overrides: Any) -> Any:
    return DeleteAclsRequest.DeleteAclsFilter(**_filter_fields(**overrides))


def test_version_0_is_literal_only(broker: BrokerProcess, admin: AdminClient) -> None:
    create(admin, [PREFIX_ORD])
    with RawConnection(broker.host, broker.port or 0) as conn:
        created = conn.request(30, 0, creations=[_creation("orders")])
        assert [r.error_code for r in created.results] == [0]
        described = conn.request(29, 0, **_filter_fields(pattern_type_filter=3))
        assert described.error_code == 0
        assert [(r.resource_type, r.resource_name) for r in described.resources] == [(2, "orders")]
        deleted = conn.request(31, 0, filters=[_filter(pattern_type_filter=3)])
        assert [[a.resource_name for a in r.matching_acls] for r in deleted.filter_results] == [["orders"]]
    assert describe(admin, ANY_FILTER) == keys([PREFIX_ORD])


@pytest.mark.parametrize("version", [1, 3])  # v3 is flexible, v1 is not; confluent-kafka sends v2
def test_unknown_codes_are_refused_per_item(broker: BrokerProcess, version: int) -> None:
    with RawConnection(broker.host, broker.port or 0) as conn:
        created = conn.request(30, version, creations=[_creation("orders", pattern=2), _creation("orders", operation=99),
                                                 _creation("orders"), _creation("orders")])
        assert [(r.error_code, r.error_message is not None) for r in created.results] == [
            (42, True), (42, True), (0, False), (0, False)]
        assert "MATCH" in created.results[0].error_message
        described = conn.request(29, version, **_filter_fields(operation=99))
        assert described.error_code == 42 and "unknown operation" in described.error_message
        assert described.resources == []
        deleted = conn.request(31, version, filters=[_filter(permission_type=0), _filter(resource_type_filter=3)])
        assert [r.error_code for r in deleted.filter_results] == [42, 0]
        # The invalid filter deleted nothing; the valid one (groups) had nothing to delete.
        [resource] = conn.request(29, version, **_filter_fields()).resources
        assert resource.resource_name == "orders" and len(resource.acls) == 1  # the duplicate creation is one ACL


def test_acls_survive_restart(broker: BrokerProcess) -> None:
    create(AdminClient({"bootstrap.servers": broker.bootstrap}), ALL)
    broker.restart()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    assert describe(admin, ANY_FILTER) == keys(ALL)
    futures = admin.delete_acls([acl_filter(ResourceType.TOPIC)], request_timeout=TIMEOUT)
    [future] = futures.values()
    assert len(future.result(timeout=TIMEOUT)) == 4
    broker.restart()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    assert describe(admin, ANY_FILTER) == keys([GROUP, CLUSTER])
