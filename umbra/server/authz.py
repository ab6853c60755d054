"""ACL enforcement in the broker: a cache of authorization decisions over the ACL store.

Handlers ask through :class:`umbra.server.handlers.RequestContext` (``ctx.authorized``,
``ctx.require_cluster``, ``ctx.denied_topics``...), which hands the request's principal and client IP to
``broker.authorizer``. With ``authorization.enabled`` off, ``broker.authorizer`` is None and every check is that
one attribute test.

Decisions are :func:`umbra.security.authorizer.authorize`'s, over an :class:`AclIndex` of the store's
bindings, and are cached by (principal, host, operation, resource). The store bumps its ``generation`` on every
change (CreateAcls, DeleteAcls, a cluster's new ACL document, the shadow link's ACL syncer), and the cache is
dropped, and the index rebuilt, on the first check after one: a revoked ACL stops applying to the next request.
"""

from __future__ import annotations

import ipaddress
import logging

from umbra.config import AuthorizationConfig
from umbra.security.acls import AclOperation, AclStore, ResourceType
from umbra.security.authorizer import (
    AclIndex,
    AuthorizerConfig,
    Decision,
    Resource,
    authorize,
    authorize_by_resource_type,
)

log = logging.getLogger("umbra.authorizer")

CLUSTER_NAME = "kafka-cluster"
"""Kafka's name of the one CLUSTER resource: ACLs on the cluster are literal ACLs on this name."""

MAX_CACHED_DECISIONS = 100_000  # past it the cache starts again (principals x hosts x resources can be many)

DecisionKey = tuple[str, str, AclOperation, ResourceType, str]
AnyDecisionKey = tuple[str, str, AclOperation, ResourceType]


def client_ip(peer: str) -> str:
    """The IP address of ``peer`` ("ip:port", "[ipv6]:port" or "ipv6:port"), as ACL hosts name it: an IPv4
    client of a dual-stack listener ("::ffff:10.0.0.1") is its IPv4 address, as in Kafka."""
    host = peer.rpartition(":")[0].strip("[]") if ":" in peer else peer
    if host.startswith("::ffff:"):
        try:
            mapped = ipaddress.IPv6Address(host).ipv4_mapped
        except ValueError:
            return host
        return str(mapped) if mapped is not None else host
    return host


class BrokerAuthorizer:
    """Decides, and remembers, whether a principal connecting from a host may do an operation on a resource."""

    def __init__(self, store: AclStore, config: AuthorizerConfig) -> None:
        self.config = config
        self._store = store
        self._generation = -1  # of the store, when the index was built; -1: never
        self._index = AclIndex(())
        self._decisions: dict[DecisionKey, bool] = {}
        self._any_decisions: dict[AnyDecisionKey, bool] = {}

    @classmethod
    def from_config(cls, config: AuthorizationConfig, store: AclStore) -> BrokerAuthorizer | None:
        """The broker's authorizer, or None when authorization is disabled (every request is allowed)."""
        if not config.enabled:
            return None
        return cls(store, AuthorizerConfig(frozenset(config.super_users), config.allow_everyone_if_no_acl_found))

    def allowed(self, principal: str, host: str, operation: AclOperation, resource_type: ResourceType,
                name: str) -> bool:
        """May ``principal`` from ``host`` perform ``operation`` on the resource ``resource_type`` ``name``?"""
        name = name or ""  # a malformed request's null name: only ACLs on every name ("*") can apply
        key = (principal, host, operation, resource_type, name)
        if self._store.generation == self._generation:
            cached = self._decisions.get(key)
            if cached is not None:
                return cached
        else:
            self._refresh()
        resource = Resource(resource_type, name)
        decision = authorize(self._index.applicable(resource), principal, host, operation, resource, self.config)
        self._log(decision, principal, host, operation, f"{resource_type.name} {name!r}")
        if len(self._decisions) >= MAX_CACHED_DECISIONS:
            self._decisions.clear()
        self._decisions[key] = decision.allowed
        return decision.allowed

    def allowed_on_any(self, principal: str, host: str, operation: AclOperation, resource_type: ResourceType) -> bool:
        """May ``principal`` from ``host`` perform ``operation`` on some resource of ``resource_type`` (KIP-679)?"""
        key = (principal, host, operation, resource_type)
        if self._store.generation == self._generation:
            cached = self._any_decisions.get(key)
            if cached is not None:
                return cached
        else:
            self._refresh()
        decision = authorize_by_resource_type(self._index.of_type(resource_type), principal, host, operation,
                                              resource_type, self.config)
        self._log(decision, principal, host, operation, f"any {resource_type.name}")
        if len(self._any_decisions) >= MAX_CACHED_DECISIONS:
            self._any_decisions.clear()
        self._any_decisions[key] = decision.allowed
        return decision.allowed

    def _refresh(self) -> None:
        self._generation, bindings = self._store.snapshot()
        self._index = AclIndex(bindings)
        self._decisions.clear()
        self._any_decisions.clear()

    @staticmethod
    def _log(decision: Decision, principal: str, host: str, operation: AclOperation, what: str) -> None:
        # Once per decision and ACL generation (then it is cached), so a denied client cannot flood the log.
        if decision.allowed:
            log.debug("allowed %s from %s: %s on %s (%s)", principal, host, operation.name, what, decision.reason)
        else:
            log.info("denied %s from %s: %s on %s (%s)", principal, host, operation.name, what, decision.reason)
