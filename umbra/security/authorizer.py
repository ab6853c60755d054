"""The authorization decision, with Kafka's semantics, as pure functions of the ACLs.

The broker asks through :mod:`umbra.server.authz` (a cache of decisions over an :class:`AclIndex` of
``broker.acls``). The rules are those of Kafka's StandardAuthorizer:

- a super user is allowed everything;
- the ACLs that apply to a resource are the literal ACLs on its name or on ``*``, and the prefixed
  ACLs whose prefix starts its name, of its resource type;
- of those, an ACL applies to a request when its principal is the request's or ``User:*``, and its
  host is the request's or ``*``;
- a matching DENY (on the operation or ALL) wins over everything;
- otherwise a matching ALLOW is needed: on the operation, on ALL, or on an operation that implies it
  (READ, WRITE, DELETE and ALTER imply DESCRIBE; ALTER_CONFIGS implies DESCRIBE_CONFIGS);
- a resource with no ACLs at all, for anyone, is allowed only if ``allow_everyone_if_no_acl_found``.

:func:`authorize_by_resource_type` is KIP-679's question "may this principal do this to some resource of
the type?" (an idempotent producer needs WRITE on any topic).
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


class AclIndex:
    """The ACLs of one generation of the store, indexed by resource: :meth:`applicable` finds the ones that
    apply to a resource with a few dictionary look-ups (one per distinct prefix length) instead of a scan."""

    def __init__(self, bindings: Iterable[AclBinding]) -> None:
        self._literal: dict[tuple[ResourceType, str], list[AclBinding]] = {}
        self._prefixed: dict[tuple[ResourceType, str], list[AclBinding]] = {}
        self._by_type: dict[ResourceType, list[AclBinding]] = {}
        lengths: dict[ResourceType, set[int]] = {}
        for binding in bindings:
            key = (binding.resource_type, binding.resource_name)
            self._by_type.setdefault(binding.resource_type, []).append(binding)
            if binding.pattern_type == PatternType.LITERAL:
                self._literal.setdefault(key, []).append(binding)
            elif binding.pattern_type == PatternType.PREFIXED:
                self._prefixed.setdefault(key, []).append(binding)
                lengths.setdefault(binding.resource_type, set()).add(len(binding.resource_name))
        self._prefix_lengths = {resource_type: sorted(found) for resource_type, found in lengths.items()}

    def applicable(self, resource: Resource) -> list[AclBinding]:
        """The ACLs that apply to ``resource`` (for anyone): as :func:`applies_to_resource` selects them."""
        resource_type, name = resource.resource_type, resource.name
        found = list(self._literal.get((resource_type, name), ()))
        if name != WILDCARD:
            found += self._literal.get((resource_type, WILDCARD), ())
        for length in self._prefix_lengths.get(resource_type, ()):
            if length > len(name):
                break
            found += self._prefixed.get((resource_type, name[:length]), ())
        return found

    def of_type(self, resource_type: ResourceType) -> list[AclBinding]:
        return list(self._by_type.get(resource_type, ()))


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


def authorize_by_resource_type(acls: Iterable[AclBinding], principal: str, host: str, operation: AclOperation,
                               resource_type: ResourceType, config: AuthorizerConfig = DEFAULT_CONFIG) -> Decision:
    """May ``principal`` from ``host`` perform ``operation`` on at least one resource of ``resource_type``?

    Kafka's ``authorizeByResourceType`` (KIP-679): allowed for a super user; with
    ``allow_everyone_if_no_acl_found``, when some resource of the type has no ACL (none is a literal ``*``);
    when an ALLOW on the literal ``*`` applies; or when an ALLOW on a literal name or prefix applies that no
    DENY dominates (a DENY on the same literal name, or on a prefix of it). A DENY on the literal ``*``
    denies. Only the operation itself and ALL count here: no operation implies another.
    """
    if operation in (AclOperation.UNKNOWN, AclOperation.ANY):
        raise ValueError(f"authorize_by_resource_type needs a concrete operation, not {operation.name}")
    if resource_type in (ResourceType.UNKNOWN, ResourceType.ANY):
        raise ValueError(f"authorize_by_resource_type needs a concrete resource type, not {resource_type.name}")
    if principal in config.super_users:
        return Decision(True, f"{principal} is a super user")
    of_type = [b for b in acls if b.resource_type == resource_type]
    if config.allow_everyone_if_no_acl_found and not any(
            b.pattern_type == PatternType.LITERAL and b.resource_name == WILDCARD for b in of_type):
        return Decision(True, f"some {resource_type.name} has no ACL and allow_everyone_if_no_acl_found is set")
    denied: dict[PatternType, set[str]] = {PatternType.LITERAL: set(), PatternType.PREFIXED: set()}
    allowed: list[AclBinding] = []
    for binding in of_type:
        if binding.principal not in (principal, WILDCARD_PRINCIPAL) or binding.host not in (host, WILDCARD):
            continue
        if binding.operation not in (operation, AclOperation.ALL):
            continue
        if binding.permission_type == PermissionType.DENY:
            if binding.pattern_type == PatternType.LITERAL and binding.resource_name == WILDCARD:
                return Decision(False, f"denied by ACL: {binding}", binding)
            denied[binding.pattern_type].add(binding.resource_name)
        elif binding.permission_type == PermissionType.ALLOW:
            allowed.append(binding)
    for binding in allowed:  # an ALLOW on every name: no narrower DENY can take them all
        if binding.pattern_type == PatternType.LITERAL and binding.resource_name == WILDCARD:
            return Decision(True, f"allowed by ACL: {binding}", binding)
    for binding in allowed:
        name = binding.resource_name
        if binding.pattern_type == PatternType.LITERAL and name in denied[PatternType.LITERAL]:
            continue
        if any(name[:end] in denied[PatternType.PREFIXED] for end in range(1, len(name) + 1)):
            continue  # a DENY on a prefix of it takes every name this ALLOW covers
        return Decision(True, f"allowed by ACL: {binding}", binding)
    return Decision(False, f"no ACL allows {operation.name} on any {resource_type.name} for {principal} from {host}")
