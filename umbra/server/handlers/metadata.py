"""Metadata (3) and DescribeCluster (60): the brokers, the topics with ids, and partition leaders."""

from __future__ import annotations

import uuid
from typing import Any

from umbra.cluster.metadata import TopicMetadata, validate_topic_name
from umbra.errors import ErrorCode, KafkaError
from umbra.server.handlers import RequestContext, handles

_ZERO_UUID = uuid.UUID(int=0)


def broker_entries(ctx: RequestContext) -> list[dict[str, Any]]:
    """This broker alone, or on a cluster every live broker the control plane knows."""
    broker = ctx.broker
    if broker.clustered:
        entries = []
        for member in broker.control.view().alive_brokers():
            address, _, port_text = member.kafka_address.rpartition(":")
            entries.append({"node_id": member.node_id, "host": address, "port": int(port_text), "rack": member.rack})
        if entries:
            return entries
    host, port = broker.advertised_endpoint()
    return [{"node_id": broker.node_id, "host": host, "port": port, "rack": broker.config.rack}]


def controller_id(ctx: RequestContext) -> int:
    if not ctx.broker.clustered:
        return ctx.broker.node_id
    controller = ctx.broker.control.view().controller
    return controller if controller is not None else -1


def _topic_entry(ctx: RequestContext, meta: TopicMetadata) -> dict[str, Any]:
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
            "partitions": partitions}


def _error_topic(name: str | None, code: ErrorCode, topic_id: uuid.UUID | None = None) -> dict[str, Any]:
    return {"error_code": int(code), "name": name, "topic_id": topic_id or _ZERO_UUID, "is_internal": False,
            "partitions": []}


@handles(3, "Metadata", 0, 12)
async def handle_metadata(ctx: RequestContext, request: Any) -> dict[str, Any]:
    broker = ctx.broker
    version = ctx.api_version
    requested = request.topics
    all_topics = requested is None or (version == 0 and not requested)
    allow_auto_create = version < 4 or bool(request.allow_auto_topic_creation)
    topics: list[dict[str, Any]] = []
    if all_topics:
        topics = [_topic_entry(ctx, meta) for meta in broker.metadata.topics()]
    else:
        for item in requested:
            name = item.name
            topic_id = item.topic_id if version >= 10 else None
            if not name and topic_id is not None and topic_id != _ZERO_UUID:
                meta = broker.metadata.topic_by_id(topic_id)
                topics.append(_topic_entry(ctx, meta) if meta else _error_topic(None, ErrorCode.UNKNOWN_TOPIC_ID, topic_id))
                continue
            meta = broker.metadata.topic(name) if name else None
            if meta is None and name:
                try:
                    validate_topic_name(name)
                except KafkaError:
                    topics.append(_error_topic(name, ErrorCode.INVALID_TOPIC_EXCEPTION))
                    continue
                if allow_auto_create:
                    meta = broker.auto_create(name)
                    if meta is not None:
                        # Kafka answers LEADER_NOT_AVAILABLE right after auto-creation; clients retry.
                        topics.append(_topic_entry(ctx, meta))
                        continue
            topics.append(_topic_entry(ctx, meta) if meta else _error_topic(name, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION))
    return {"throttle_time_ms": 0, "brokers": broker_entries(ctx), "cluster_id": broker.metadata.cluster_id,
            "controller_id": controller_id(ctx), "topics": topics}


@handles(60, "DescribeCluster", 0, 1)
async def handle_describe_cluster(ctx: RequestContext, request: Any) -> dict[str, Any]:
    return {"throttle_time_ms": 0, "error_code": 0, "error_message": None, "endpoint_type": 1,
            "cluster_id": ctx.broker.metadata.cluster_id, "controller_id": controller_id(ctx),
            "brokers": [{"broker_id": b["node_id"], "host": b["host"], "port": b["port"], "rack": b["rack"]}
                        for b in broker_entries(ctx)]}
