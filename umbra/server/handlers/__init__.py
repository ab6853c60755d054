"""One module per Kafka API family. Each handler reads top to bottom: validate, act, respond.

A handler is ``async def handle(ctx: RequestContext, request) -> response`` where
``request`` is the decoded kafka-python request object and the response is one of
- a ``dict`` of top-level response fields (nested dicts/lists are converted by the codec),
- a kafka-python response object,
- ``bytes``: the already-encoded response body (hot paths),
- ``None``: send nothing (Produce with acks=0).

Handlers raise :class:`umbra.errors.KafkaError` for request-wide errors; the
connection turns it into an error response. Per-partition errors go into the
response itself.

Authorization (ACLs, when ``authorization.enabled``) is a step of its own, after validating and before acting:
``ctx.authorized(operation, resource_type, name)``, ``ctx.require_cluster(operation)`` and their kin below
(the table of what each API checks is Kafka's; ``tests/unit/server/test_authz_table.py`` holds umbra's).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from umbra.errors import ClusterAuthorizationFailed, GroupAuthorizationFailed, KafkaError, TopicAuthorizationFailed
from umbra.protocol.codec import RequestHeader
from umbra.security.acls import AclOperation, ResourceType
from umbra.server.authz import CLUSTER_NAME, client_ip

if TYPE_CHECKING:
    from umbra.server.broker import Broker
    from umbra.server.sasl import SaslSession


ANONYMOUS = "User:ANONYMOUS"  # Kafka's principal for a connection that did not authenticate


@dataclass(slots=True)
class RequestContext:
    broker: Broker
    header: RequestHeader
    peer: str
    connection_id: int
    principal: str = ANONYMOUS  # "User:<name>", set by SASL or by the client certificate (mTLS)
    listener: str | None = None  # the name of the listener the request came in on (None: the first)
    sasl: SaslSession | None = None  # the connection's SASL exchange, on a SASL listener

    @property
    def api_version(self) -> int:
        return self.header.api_version

    # --- authorization: every check is True when authorization is disabled (broker.authorizer is None) ------
    @property
    def client_ip(self) -> str:
        """The client's IP address: the host that ACLs are matched against."""
        return client_ip(self.peer)

    def authorized(self, operation: AclOperation, resource_type: ResourceType, name: str) -> bool:
        """May this request's principal, from its client's IP, perform ``operation`` on the resource?"""
        authorizer = self.broker.authorizer
        return authorizer is None or authorizer.allowed(self.principal, self.client_ip, operation, resource_type, name)

    def authorized_cluster(self, operation: AclOperation) -> bool:
        return self.authorized(operation, ResourceType.CLUSTER, CLUSTER_NAME)

    def authorized_on_any(self, operation: AclOperation, resource_type: ResourceType) -> bool:
        """May it perform ``operation`` on at least one resource of the type (KIP-679)?"""
        authorizer = self.broker.authorizer
        return authorizer is None or authorizer.allowed_on_any(self.principal, self.client_ip, operation,
                                                               resource_type)

    def denied_topics(self, operation: AclOperation, names: Iterable[str]) -> frozenset[str]:
        """The topics of ``names`` it may not ``operation``: one check per distinct name, none when disabled."""
        authorizer = self.broker.authorizer
        if authorizer is None:
            return _NOTHING_DENIED
        principal, host = self.principal, self.client_ip
        return frozenset(name for name in set(names)
                         if not authorizer.allowed(principal, host, operation, ResourceType.TOPIC, name))

    def authorized_operations(self, resource_type: ResourceType, name: str) -> int:
        """KIP-430: the bit field of the operations this principal may perform on the resource (bit n set:
        AclOperation n allowed), over the operations Kafka defines for its type. Every one while authorization
        is off."""
        return sum(1 << int(op) for op in SUPPORTED_OPERATIONS.get(resource_type, ())
                   if self.authorized(op, resource_type, name))

    def require_cluster(self, operation: AclOperation) -> None:
        """Raise ClusterAuthorizationFailed (CLUSTER_AUTHORIZATION_FAILED) unless it may ``operation`` the cluster."""
        if not self.authorized_cluster(operation):
            raise ClusterAuthorizationFailed(f"{self.principal} is not authorized to {operation.name} the cluster")

    def require_group(self, operation: AclOperation, group_id: str) -> None:
        """Raise GroupAuthorizationFailed (GROUP_AUTHORIZATION_FAILED) unless it may ``operation`` the group."""
        if not self.authorized(operation, ResourceType.GROUP, group_id):
            raise GroupAuthorizationFailed(f"{self.principal} is not authorized to {operation.name} group "
                                           f"{group_id!r}")

    def require_topic(self, operation: AclOperation, name: str) -> None:
        """Raise TopicAuthorizationFailed (TOPIC_AUTHORIZATION_FAILED) unless it may ``operation`` the topic."""
        if not self.authorized(operation, ResourceType.TOPIC, name):
            raise topic_denied(self.principal, operation, name)


_NOTHING_DENIED: frozenset[str] = frozenset()

# Kafka's AclEntry.supportedOperations: what authorized_operations reports on, per resource type.
SUPPORTED_OPERATIONS: dict[ResourceType, tuple[AclOperation, ...]] = {
    ResourceType.TOPIC: (AclOperation.READ, AclOperation.WRITE, AclOperation.CREATE, AclOperation.DESCRIBE,
                         AclOperation.DELETE, AclOperation.ALTER, AclOperation.DESCRIBE_CONFIGS,
                         AclOperation.ALTER_CONFIGS),
    ResourceType.GROUP: (AclOperation.READ, AclOperation.DESCRIBE, AclOperation.DELETE,
                         AclOperation.DESCRIBE_CONFIGS, AclOperation.ALTER_CONFIGS),
    ResourceType.CLUSTER: (AclOperation.CREATE, AclOperation.CLUSTER_ACTION, AclOperation.DESCRIBE_CONFIGS,
                           AclOperation.ALTER_CONFIGS, AclOperation.IDEMPOTENT_WRITE, AclOperation.ALTER,
                           AclOperation.DESCRIBE),
    ResourceType.TRANSACTIONAL_ID: (AclOperation.DESCRIBE, AclOperation.WRITE),
    ResourceType.DELEGATION_TOKEN: (AclOperation.DESCRIBE,),
    ResourceType.USER: (AclOperation.CREATE_TOKENS, AclOperation.DESCRIBE_TOKENS),
}


def topic_denied(principal: str, operation: AclOperation, name: str) -> KafkaError:
    return TopicAuthorizationFailed(f"{principal} is not authorized to {operation.name} topic {name!r}")


HandlerFn = Callable[[RequestContext, Any], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class ApiHandler:
    api_key: int
    name: str
    min_version: int
    max_version: int
    handle: HandlerFn


API_HANDLERS: dict[int, ApiHandler] = {}


def handles(api_key: int, name: str, min_version: int, max_version: int) -> Callable[[HandlerFn], HandlerFn]:
    """Register a handler for ``api_key`` versions ``min_version..max_version`` (advertised by ApiVersions)."""

    def register(fn: HandlerFn) -> HandlerFn:
        if api_key in API_HANDLERS:
            raise RuntimeError(f"two handlers for api key {api_key}")
        API_HANDLERS[api_key] = ApiHandler(api_key, name, min_version, max_version, fn)
        return fn

    return register


def load_all() -> dict[int, ApiHandler]:
    """Import every handler module so that it registers itself."""
    import importlib
    import pkgutil

    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    return API_HANDLERS
