"""The authorization decision, with Kafka's semantics, as a pure function of the ACLs (not enforced yet).

Handlers will call :func:`authorize` with ``broker.acls.all()`` (or an index of it) once enforcement
lands; nothing calls it today. The rules are those of Kafka's StandardAuthorizer:

- a super user is allowed everything;
- the ACLs that apply to a resource are the literal ACLs on its name or on ``*``, and the prefixed
  ACLs whose prefix starts its name, of its resource type;
- of those, an ACL applies to a request when its principal is the request's or ``User:*``, and its
  host is the request's or ``*``;
- a matching DENY (on the operation or ALL) wins over everything;
- otherwise a matching ALLOW is needed: on the operation, on ALL, or on an operation that implies it
  (READ, WRITE, DELETE and ALTER imply DESCRIBE; ALTER_CONFIGS implies DESCRIBE_CONFIGS);
- a resource with no ACLs at all, for anyone, is allowed only if ``allow_everyone_if_no_acl_found``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from umbra.security.acls import (
    WILDCARD,
    WILDCARD_PRINCIPAL,
    AclBinding,
    AclOperation,
    PatternType,
    PermissionType,
    ResourceType,
)

_IMPLIED_BY: dict[AclOperation, frozenset[AclOperation]] = {
    AclOperation.DESCRIBE: frozenset({AclOperation.READ, AclOperation.WRITE, AclOperation.DELETE,
                                      AclOperation.ALTER}),
    AclOperation.DESCRIBE_CONFIGS: frozenset({AclOperation.ALTER_CONFIGS}),
}


@dataclass(frozen=True, slots=True)
class Resource:
    """A concrete resource a request acts on (not a pattern): ``Resource(ResourceType.TOPIC, "orders")``."""

    resource_type: ResourceType
    name: str


@dataclass(frozen=True, slots=True)
class AuthorizerConfig:
    """Kafka's ``super.users`` (principals such as ``User:admin``) and ``allow.everyone.if.no.acl.found``."""

    super_users: frozenset[str] = frozenset()
    allow_everyone_if_no_acl_found: bool = False


DEFAULT_CONFIG = AuthorizerConfig()


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome and why, for audit logs. Truthy when allowed."""

    allowed: bool
    reason: str
    acl: AclBinding | None = None

    def __bool__(self) -> bool:
        return self.allowed


def applies_to_resource(binding: AclBinding, resource: Resource) -> bool:
    if binding.resource_type != resource.resource_type:
        return False
    if binding.pattern_type == PatternType.LITERAL:
        return binding.resource_name in (resource.name, WILDCARD)
    if binding.pattern_type == PatternType.PREFIXED:
        return resource.name.startswith(binding.resource_name)
    return False


def _grants(binding: AclBinding, operation: AclOperation) -> bool:
    if binding.operation in (AclOperation.ALL, operation):
        return True
    # Only an ALLOW implies other operations: a DENY of READ does not deny DESCRIBE.
    return binding.permission_type == PermissionType.ALLOW and binding.operation in _IMPLIED_BY.get(operation, ())


def authorize(acls: Iterable[AclBinding], principal: str, host: str, operation: AclOperation, resource: Resource,
              config: AuthorizerConfig = DEFAULT_CONFIG) -> Decision:
    """May ``principal`` connecting from ``host`` perform ``operation`` on ``resource``, given ``acls``?"""
    if operation in (AclOperation.UNKNOWN, AclOperation.ANY):
        raise ValueError(f"authorize needs a concrete operation, not {operation.name}")
    if resource.resource_type in (ResourceType.UNKNOWN, ResourceType.ANY):
        raise ValueError(f"authorize needs a concrete resource type, not {resource.resource_type.name}")
    if principal in config.super_users:
        return Decision(True, f"{principal} is a super user")
    resource_has_acls = False
    allowed_by: AclBinding | None = None
    for binding in acls:
        if not applies_to_resource(binding, resource):
            continue
        resource_has_acls = True
        if binding.principal not in (principal, WILDCARD_PRINCIPAL) or binding.host not in (host, WILDCARD):
            continue
        if not _grants(binding, operation):
            continue
        if binding.permission_type == PermissionType.DENY:
            return Decision(False, f"denied by ACL: {binding}", binding)
        if allowed_by is None:
            allowed_by = binding
    if allowed_by is not None:
        return Decision(True, f"allowed by ACL: {allowed_by}", allowed_by)
    if not resource_has_acls:
        if config.allow_everyone_if_no_acl_found:
            return Decision(True, "no ACL on the resource and allow_everyone_if_no_acl_found is set")
        return Decision(False, "no ACL on the resource")
    return Decision(False, f"no ACL allows {operation.name} for {principal} from {host}")
