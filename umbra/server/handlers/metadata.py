"""Metadata (3) and DescribeCluster (60): the brokers, the topics with ids, and partition leaders.

Both fill authorized operations (KIP-430) only when asked: what the principal may do with each topic (Metadata
v8+) and with the cluster (Metadata v8-10, DescribeCluster). The codec writes a set of AclOperation numbers as
Kafka's bit field, and None as Kafka's "not requested" (INT32_MIN).
"""

from __future__ import annotations

import uuid
from typing import Any

from umbra.cluster.metadata import TopicMetadata, validate_topic_name
from umbra.errors import ErrorCode, KafkaError
from umbra.security.acls import AclOperation, ResourceType
from umbra.server.authz import CLUSTER_NAME
from umbra.server.handlers import RequestContext, handles

_ZERO_UUID = uuid.UUID(int=0)


def broker_entries(ctx: RequestContext) -> list[dict[str, Any]]:
    """This broker alone, or on a cluster every live broker the control plane knows; each with its address on
    the listener the client came in on (as Kafka: a broker without that listener is left out)."""
    broker = ctx.broker
    if broker.clustered:
        entries = []
        for member in broker.control.view().alive_brokers():
            found = member.address_for(ctx.listener)
            if found is None:
                continue
            address, _, port_text = found.rpartition(":")
            entries.append({"node_id": member.node_id, "host": address, "port": int(port_text), "rack": member.rack})
        if entries:
            return entries
    host, port = broker.advertised_endpoint(ctx.listener)
    return [{"node_id": broker.node_id, "host": host, "port": port, "rack": broker.config.rack}]


def controller_id(ctx: RequestContext) -> int:
    if not ctx.broker.clustered:
        return ctx.broker.node_id
    controller = ctx.broker.control.view().controller
    return controller if controller is not None else -1


def authorized_operations(ctx: RequestContext, resource_type: ResourceType, name: str) -> set[int]:
    """KIP-430's bit field as the codec takes it: the numbers of the operations allowed."""
    bits = ctx.authorized_operations(resource_type, name)
    return {operation for operation in range(bits.bit_length()) if bits >> operation & 1}


def cluster_authorized_operations(ctx: RequestContext) -> set[int]:
    """As Kafka: none at all (0) unless the principal may DESCRIBE the cluster."""
    if not ctx.authorized_cluster(AclOperation.DESCRIBE):
        return set()
    return authorized_operations(ctx, ResourceType.CLUSTER, CLUSTER_NAME)


def topic_entry(ctx: RequestContext, meta: TopicMetadata, with_operations: bool = False) -> dict[str, Any]:
    replicas = ctx.broker.replicas
    alive = {m.node_id for m in ctx.broker.control.view().alive_brokers()} if ctx.broker.clustered else None
    partitions = []
    for p in range(meta.partitions):
        state = replicas.state(meta.name, p)
        offline = [r for r in state.replicas if alive is not None and r not in alive]
        leader_down = state.leader in offline
        partitions.append({"error_code": int(ErrorCode.LEADER_NOT_AVAILABLE) if leader_down else 0,
                           "partition_index": p, "leader_id": -1 if leader_down else state.leader,
                           "leader_epoch": state.leader_epoch, "replica_nodes": list(state.replicas),
                           "isr_nodes": [r for r in state.isr if r not in offline], "offline_replicas": offline})
    return {"error_code": 0, "name": meta.name, "topic_id": meta.topic_id, "is_internal": meta.internal,
            "partitions": partitions,
            "authorized_operations": authorized_operations(ctx, ResourceType.TOPIC, meta.name)
            if with_operations else None}


def _error_topic(name: str | None, code: ErrorCode, topic_id: uuid.UUID | None = None) -> dict[str, Any]:
    return {"error_code": int(code), "name": name, "topic_id": topic_id or _ZERO_UUID, "is_internal": False,
            "partitions": []}


def _requested_topic(ctx: RequestContext, item: Any, allow_auto_create: bool, with_operations: bool) -> dict[str, Any]:
    """One topic a Metadata request names. Authorization comes first: a topic the principal may not DESCRIBE is
    TOPIC_AUTHORIZATION_FAILED whether it exists or not, and auto-creating one needs CREATE on the cluster or the
    topic."""
    broker = ctx.broker
    name = item.name
    topic_id = item.topic_id if ctx.api_version >= 10 else None
    if not name and topic_id is not None and topic_id != _ZERO_UUID:
        meta = broker.metadata.topic_by_id(topic_id)
        if meta is None:
            return _error_topic(None, ErrorCode.UNKNOWN_TOPIC_ID, topic_id)
        if not ctx.authorized(AclOperation.DESCRIBE, ResourceType.TOPIC, meta.name):
            return _error_topic(None, ErrorCode.TOPIC_AUTHORIZATION_FAILED, topic_id)  # an id is no secret; a name is
        return topic_entry(ctx, meta, with_operations)
    if name and not ctx.authorized(AclOperation.DESCRIBE, ResourceType.TOPIC, name):
        return _error_topic(name, ErrorCode.TOPIC_AUTHORIZATION_FAILED)
    meta = broker.metadata.topic(name) if name else None
    if meta is not None:
        return topic_entry(ctx, meta, with_operations)
    if not name:
        return _error_topic(name, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
    if allow_auto_create and broker.config.auto_create_topics and not (
            ctx.authorized_cluster(AclOperation.CREATE) or ctx.authorized(AclOperation.CREATE, ResourceType.TOPIC, name)):
        return _error_topic(name, ErrorCode.TOPIC_AUTHORIZATION_FAILED)
    try:
        validate_topic_name(name)
    except KafkaError:
        return _error_topic(name, ErrorCode.INVALID_TOPIC_EXCEPTION)
    if allow_auto_create:
        meta = broker.auto_create(name)
        if meta is not None:
            # Kafka answers LEADER_NOT_AVAILABLE right after auto-creation; clients retry.
            return topic_entry(ctx, meta, with_operations)
    return _error_topic(name, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)


@handles(3, "Metadata", 0, 12)
async def handle_metadata(ctx: RequestContext, request: Any) -> dict[str, Any]:
    broker = ctx.broker
    version = ctx.api_version
    requested = request.topics
    all_topics = requested is None or (version == 0 and not requested)
    allow_auto_create = version < 4 or bool(request.allow_auto_topic_creation)
    topic_operations = version >= 8 and bool(request.include_topic_authorized_operations)
    if all_topics:  # those the principal may not DESCRIBE are left out, as if they did not exist
        every = broker.metadata.topics()
        hidden = ctx.denied_topics(AclOperation.DESCRIBE, (meta.name for meta in every))
        topics = [topic_entry(ctx, meta, topic_operations) for meta in every if meta.name not in hidden]
    else:
        topics = [_requested_topic(ctx, item, allow_auto_create, topic_operations) for item in requested]
    cluster_operations = 8 <= version <= 10 and bool(request.include_cluster_authorized_operations)
    return {"throttle_time_ms": 0, "brokers": broker_entries(ctx), "cluster_id": broker.metadata.cluster_id,
            "controller_id": controller_id(ctx), "topics": topics,
            "authorized_operations": cluster_authorized_operations(ctx) if cluster_operations else None}


@handles(60, "DescribeCluster", 0, 1)
async def handle_describe_cluster(ctx: RequestContext, request: Any) -> dict[str, Any]:
    # No authorization, as in Kafka's broker (its docs' table says DESCRIBE on the cluster, which Kafka checks only
    # to decide whether to fill cluster_authorized_operations): the brokers are Metadata's, which anyone may ask.
    operations = cluster_authorized_operations(ctx) if request.include_cluster_authorized_operations else None
    return {"throttle_time_ms": 0, "error_code": 0, "error_message": None, "endpoint_type": 1,
            "cluster_id": ctx.broker.metadata.cluster_id, "controller_id": controller_id(ctx),
            "brokers": [{"broker_id": b["node_id"], "host": b["host"], "port": b["port"], "rack": b["rack"]}
                        for b in broker_entries(ctx)], "authorized_operations": operations}
