"""The authorization decision: Kafka's StandardAuthorizer semantics, its index by resource, and KIP-679's
authorizeByResourceType."""

from __future__ import annotations

import itertools
import random

import pytest

from umbra.security.acls import AclBinding, AclOperation, PatternType, PermissionType, ResourceType
from umbra.security.authorizer import (
    AclIndex,
    AuthorizerConfig,
    Resource,
    applies_to_resource,
    authorize,
    authorize_by_resource_type,
)

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


# --- the index by resource ----------------------------------------------------------------------------------

NAMES = ["orders", "ord", "orders-eu", "o", "*", "payments", "pay", "x"]


def random_acls(rng: random.Random, count: int) -> list[AclBinding]:
    return [AclBinding(rng.choice([TOPIC, ResourceType.GROUP]), rng.choice(NAMES), rng.choice([LITERAL, PREFIXED]),
                       rng.choice(["User:alice", "User:bob", "User:*"]), rng.choice(["*", "10.0.0.1", "10.0.0.2"]),
                       rng.choice([Op.READ, Op.WRITE, Op.DESCRIBE, Op.ALL, Op.ALTER_CONFIGS, Op.DESCRIBE_CONFIGS]),
                       rng.choice([ALLOW, ALLOW, DENY]))
            for _ in range(count)]


@pytest.mark.parametrize("seed", range(20))
def test_index_finds_exactly_the_acls_that_apply(seed: int) -> None:
    rng = random.Random(seed)
    acls = random_acls(rng, rng.randrange(0, 30))
    index = AclIndex(acls)
    for resource_type, name in itertools.product([TOPIC, ResourceType.GROUP], [*NAMES, "orders-us", "zzz", ""]):
        resource = Resource(resource_type, name)
        assert sorted(map(str, index.applicable(resource))) == sorted(
            str(b) for b in acls if applies_to_resource(b, resource))
        for operation, principal in itertools.product([Op.READ, Op.DESCRIBE, Op.DESCRIBE_CONFIGS],
                                                      ["User:alice", "User:carol"]):
            assert (authorize(index.applicable(resource), principal, "10.0.0.1", operation, resource).allowed
                    is authorize(acls, principal, "10.0.0.1", operation, resource).allowed)


# --- KIP-679: may the principal do the operation on some resource of the type? ------------------------------

def on_any(acls: list[AclBinding], operation: AclOperation = Op.WRITE, principal: str = "User:alice",
           config: AuthorizerConfig | None = None) -> bool:
    return bool(authorize_by_resource_type(acls, principal, "10.0.0.1", operation, TOPIC,
                                           config or AuthorizerConfig()))


@pytest.mark.parametrize(("acls", "expected"), [
    ([], False),
    ([acl(ALLOW, Op.WRITE)], True),
    ([acl(ALLOW, Op.ALL, name="ord", pattern=PREFIXED)], True),
    ([acl(ALLOW, Op.WRITE, principal="User:*", name="*")], True),
    ([acl(ALLOW, Op.READ)], False),  # nothing implies WRITE
    ([acl(ALLOW, Op.WRITE, principal="User:bob")], False),
    ([acl(ALLOW, Op.WRITE, host="10.0.0.2")], False),
    ([acl(ALLOW, Op.WRITE, resource_type=ResourceType.GROUP)], False),
    ([acl(ALLOW, Op.WRITE), acl(DENY, Op.WRITE)], False),  # the same literal name denied
    ([acl(ALLOW, Op.WRITE), acl(DENY, Op.ALL, name="or", pattern=PREFIXED)], False),  # a prefix of it denied
    ([acl(ALLOW, Op.WRITE, name="ord", pattern=PREFIXED), acl(DENY, Op.WRITE, name="orders")], True),
    ([acl(ALLOW, Op.WRITE, name="ord", pattern=PREFIXED), acl(DENY, Op.WRITE, name="o", pattern=PREFIXED)], False),
    ([acl(ALLOW, Op.WRITE), acl(ALLOW, Op.WRITE, name="payments"), acl(DENY, Op.WRITE)], True),
    ([acl(ALLOW, Op.WRITE), acl(DENY, Op.WRITE, name="*", principal="User:*")], False),  # a DENY on every topic
    ([acl(ALLOW, Op.WRITE, name="*"), acl(DENY, Op.WRITE, name="o", pattern=PREFIXED)], True),
    ([acl(ALLOW, Op.WRITE), acl(DENY, Op.READ, name="o", pattern=PREFIXED)], True),  # another operation
])
def test_authorize_by_resource_type(acls: list[AclBinding], expected: bool) -> None:
    assert on_any(acls) is expected


def test_by_resource_type_super_users_and_default() -> None:
    deny_all = [acl(DENY, Op.ALL, name="*", principal="User:*")]
    assert on_any(deny_all, principal="User:admin", config=AuthorizerConfig(super_users=frozenset({"User:admin"})))
    everyone = AuthorizerConfig(allow_everyone_if_no_acl_found=True)
    assert on_any([], config=everyone)
    assert on_any([acl(ALLOW, Op.READ, principal="User:bob")], config=everyone)  # other topics have no ACL
    assert not on_any([acl(ALLOW, Op.READ, name="*", principal="User:bob")], config=everyone)  # every topic has one
