"""The broker's authorizer: decisions cached until the ACL store changes, the client IP ACLs match, and the
checks handlers call on their RequestContext."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from umbra.config import AuthorizationConfig
from umbra.errors import ClusterAuthorizationFailed, ErrorCode, GroupAuthorizationFailed, KafkaError
from umbra.protocol.codec import RequestHeader
from umbra.security.acls import (
    AclBinding,
    AclFilter,
    AclOperation,
    AclStore,
    PatternType,
    PermissionType,
    ResourceType,
)
from umbra.server.authz import CLUSTER_NAME, BrokerAuthorizer, client_ip
from umbra.server.handlers import RequestContext

Op = AclOperation
TOPIC, GROUP, CLUSTER = ResourceType.TOPIC, ResourceType.GROUP, ResourceType.CLUSTER


def acl(name: str, operation: AclOperation = Op.READ, permission: PermissionType = PermissionType.ALLOW,
        principal: str = "User:alice", resource_type: ResourceType = TOPIC, host: str = "*",
        pattern: PatternType = PatternType.LITERAL) -> AclBinding:
    return AclBinding(resource_type, name, pattern, principal, host, operation, permission)


@pytest.fixture
def store(tmp_path: Path) -> AclStore:
    return AclStore(tmp_path)


def enabled(store: AclStore, **settings: object) -> BrokerAuthorizer:
    authorizer = BrokerAuthorizer.from_config(AuthorizationConfig(enabled=True, **settings), store)  # type: ignore[arg-type]
    assert authorizer is not None
    return authorizer


def test_disabled_is_none(store: AclStore) -> None:
    assert BrokerAuthorizer.from_config(AuthorizationConfig(), store) is None


def test_every_change_of_the_store_reaches_the_next_decision(store: AclStore) -> None:
    authorizer = enabled(store)
    assert not authorizer.allowed("User:alice", "10.0.0.1", Op.READ, TOPIC, "orders")
    store.add([acl("orders")])
    assert authorizer.allowed("User:alice", "10.0.0.1", Op.READ, TOPIC, "orders")
    assert authorizer.allowed("User:alice", "10.0.0.1", Op.READ, TOPIC, "orders")  # from the cache
    store.add([acl("ord", permission=PermissionType.DENY, pattern=PatternType.PREFIXED, principal="User:*")])
    assert not authorizer.allowed("User:alice", "10.0.0.1", Op.READ, TOPIC, "orders")
    store.delete([AclFilter(permission_type=PermissionType.DENY)])
    assert authorizer.allowed("User:alice", "10.0.0.1", Op.READ, TOPIC, "orders")
    store.replace_all([])  # a cluster's new ACL document
    assert not authorizer.allowed("User:alice", "10.0.0.1", Op.READ, TOPIC, "orders")


def test_a_null_name_is_no_name(store: AclStore) -> None:
    authorizer = enabled(store)
    assert not authorizer.allowed("User:alice", "h", Op.WRITE, TOPIC, None)  # type: ignore[arg-type]
    store.add([acl("*", Op.WRITE)])
    assert authorizer.allowed("User:alice", "h", Op.WRITE, TOPIC, None)  # type: ignore[arg-type]


def test_unchanged_store_keeps_the_cache(store: AclStore) -> None:
    store.add([acl("orders")])
    authorizer = enabled(store)
    assert authorizer.allowed("User:alice", "10.0.0.1", Op.READ, TOPIC, "orders")
    generation = store.generation
    store.add([acl("orders")])  # already stored: no change, no new generation
    store.replace_all(store.all())
    assert store.generation == generation


def test_any_topic_decisions_follow_the_store(store: AclStore) -> None:
    authorizer = enabled(store)
    assert not authorizer.allowed_on_any("User:alice", "10.0.0.1", Op.WRITE, TOPIC)
    store.add([acl("logs-", Op.WRITE, pattern=PatternType.PREFIXED)])
    assert authorizer.allowed_on_any("User:alice", "10.0.0.1", Op.WRITE, TOPIC)


def test_super_users_and_default(store: AclStore) -> None:
    authorizer = enabled(store, super_users=("User:admin",), allow_everyone_if_no_acl_found=True)
    assert authorizer.allowed("User:admin", "h", Op.ALTER, CLUSTER, CLUSTER_NAME)
    assert authorizer.allowed("User:alice", "h", Op.READ, TOPIC, "orders")  # no ACL on it
    store.add([acl("orders", principal="User:bob")])
    assert not authorizer.allowed("User:alice", "h", Op.READ, TOPIC, "orders")


@pytest.mark.parametrize(("peer", "ip"), [
    ("10.1.2.3:5555", "10.1.2.3"),
    ("::1:5555", "::1"),
    ("[::1]:5555", "::1"),
    ("::ffff:10.1.2.3:5555", "10.1.2.3"),
    ("fe80::1:5555", "fe80::1"),
    ("?", "?"),
])
def test_client_ip(peer: str, ip: str) -> None:
    assert client_ip(peer) == ip


def context(authorizer: BrokerAuthorizer | None, principal: str = "User:alice",
            peer: str = "10.0.0.1:4000") -> RequestContext:
    broker = SimpleNamespace(authorizer=authorizer)
    return RequestContext(broker, RequestHeader(0, 0, 1, "c"), peer, 1, principal)  # type: ignore[arg-type]


def test_context_checks(store: AclStore) -> None:
    store.add([acl("orders"), acl("g", resource_type=GROUP), acl(CLUSTER_NAME, Op.DESCRIBE, resource_type=CLUSTER,
                                                                   host="10.0.0.1")])
    ctx = context(enabled(store))
    assert ctx.authorized(Op.READ, TOPIC, "orders")
    assert ctx.authorized(Op.DESCRIBE, TOPIC, "orders")  # READ implies it
    assert ctx.denied_topics(Op.READ, ["orders", "payments", "payments"]) == {"payments"}
    ctx.require_group(Op.READ, "g")
    with pytest.raises(GroupAuthorizationFailed):
        ctx.require_group(Op.DELETE, "g")
    ctx.require_cluster(Op.DESCRIBE)
    with pytest.raises(ClusterAuthorizationFailed):
        ctx.require_cluster(Op.ALTER)
    with pytest.raises(KafkaError) as denied:
        ctx.require_topic(Op.WRITE, "orders")
    assert denied.value.code is ErrorCode.TOPIC_AUTHORIZATION_FAILED
    elsewhere = context(enabled(store), peer="10.0.0.2:4000")  # the cluster ACL names a host
    assert not elsewhere.authorized_cluster(Op.DESCRIBE)


def test_context_without_authorizer_allows_everything() -> None:
    ctx = context(None)
    assert ctx.authorized(Op.ALTER, CLUSTER, CLUSTER_NAME)
    assert ctx.authorized_on_any(Op.WRITE, TOPIC)
    assert ctx.denied_topics(Op.WRITE, ["a", "b"]) == frozenset()
    ctx.require_cluster(Op.ALTER)
    ctx.require_group(Op.DELETE, "g")
    ctx.require_topic(Op.DELETE, "t")
