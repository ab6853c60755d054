"""The (not yet enforced) authorization decision: Kafka's StandardAuthorizer semantics."""

from __future__ import annotations

import pytest

from umbra.security.acls import AclBinding, AclOperation, PatternType, PermissionType, ResourceType
from umbra.security.authorizer import AuthorizerConfig, Resource, authorize

TOPIC = ResourceType.TOPIC
LITERAL, PREFIXED = PatternType.LITERAL, PatternType.PREFIXED
ALLOW, DENY = PermissionType.ALLOW, PermissionType.DENY
Op = AclOperation
ORDERS = Resource(TOPIC, "orders")


def acl(permission: PermissionType, operation: AclOperation, principal: str = "User:alice", name: str = "orders",
        pattern: PatternType = LITERAL, host: str = "*", resource_type: ResourceType = TOPIC) -> AclBinding:
    return AclBinding(resource_type, name, pattern, principal, host, operation, permission)


def allowed(acls: list[AclBinding], operation: AclOperation = Op.READ, principal: str = "User:alice",
            host: str = "10.0.0.1", resource: Resource = ORDERS, config: AuthorizerConfig | None = None) -> bool:
    return bool(authorize(acls, principal, host, operation, resource, config or AuthorizerConfig()))


def test_allow_is_needed() -> None:
    assert allowed([acl(ALLOW, Op.READ)])
    assert not allowed([acl(ALLOW, Op.READ)], Op.WRITE)
    assert not allowed([acl(ALLOW, Op.READ, principal="User:bob")])


def test_deny_wins_over_allow() -> None:
    acls = [acl(ALLOW, Op.ALL, principal="User:*"), acl(DENY, Op.READ)]
    assert not allowed(acls)
    assert allowed(acls, Op.WRITE)
    assert allowed(acls, principal="User:bob")
    decision = authorize(acls, "User:alice", "10.0.0.1", Op.READ, ORDERS)
    assert decision.acl == acl(DENY, Op.READ) and "denied" in decision.reason


def test_deny_all_denies_every_operation() -> None:
    acls = [acl(ALLOW, Op.READ), acl(DENY, Op.ALL, name="ord", pattern=PREFIXED)]
    assert not allowed(acls)
    assert not allowed(acls, Op.DESCRIBE)


@pytest.mark.parametrize(("granted", "requested", "expected"), [
    (Op.READ, Op.DESCRIBE, True),
    (Op.WRITE, Op.DESCRIBE, True),
    (Op.DELETE, Op.DESCRIBE, True),
    (Op.ALTER, Op.DESCRIBE, True),
    (Op.ALTER_CONFIGS, Op.DESCRIBE_CONFIGS, True),
    (Op.CREATE, Op.DESCRIBE, False),
    (Op.DESCRIBE, Op.READ, False),
    (Op.ALL, Op.IDEMPOTENT_WRITE, True),
])
def test_implied_operations(granted: AclOperation, requested: AclOperation, expected: bool) -> None:
    assert allowed([acl(ALLOW, granted)], requested) is expected


def test_deny_does_not_imply() -> None:
    # A DENY of READ does not deny DESCRIBE, which the ALLOW of READ implies.
    assert allowed([acl(ALLOW, Op.READ), acl(DENY, Op.READ, principal="User:*")], Op.DESCRIBE)


@pytest.mark.parametrize(("binding", "expected"), [
    (acl(ALLOW, Op.READ, name="*"), True),
    (acl(ALLOW, Op.READ, name="ord", pattern=PREFIXED), True),
    (acl(ALLOW, Op.READ, name="orders", pattern=PREFIXED), True),
    (acl(ALLOW, Op.READ, name="orders-", pattern=PREFIXED), False),
    (acl(ALLOW, Op.READ, name="*", pattern=PREFIXED), False),  # a prefixed '*' is just the prefix "*"
    (acl(ALLOW, Op.READ, name="order"), False),
    (acl(ALLOW, Op.READ, resource_type=ResourceType.GROUP), False),
    (acl(ALLOW, Op.READ, principal="User:*"), True),
    (acl(ALLOW, Op.READ, host="10.0.0.1"), True),
    (acl(ALLOW, Op.READ, host="10.0.0.2"), False),
])
def test_which_acls_apply(binding: AclBinding, expected: bool) -> None:
    assert allowed([binding]) is expected


def test_super_users_bypass_acls() -> None:
    config = AuthorizerConfig(super_users=frozenset({"User:admin"}))
    assert allowed([acl(DENY, Op.ALL, principal="User:*")], principal="User:admin", config=config)
    assert not allowed([], principal="User:alice", config=config)


def test_allow_everyone_if_no_acl_found() -> None:
    config = AuthorizerConfig(allow_everyone_if_no_acl_found=True)
    assert not allowed([])
    assert allowed([], config=config)
    # An ACL for someone else on the resource means the resource has ACLs: no default allow.
    assert not allowed([acl(ALLOW, Op.READ, principal="User:bob")], config=config)
    # ACLs on other resources do not count.
    assert allowed([acl(ALLOW, Op.READ, name="payments")], config=config)


def test_filter_values_are_refused() -> None:
    with pytest.raises(ValueError):
        authorize([], "User:alice", "h", Op.ANY, ORDERS)
    with pytest.raises(ValueError):
        authorize([], "User:alice", "h", Op.READ, Resource(ResourceType.ANY, "orders"))
