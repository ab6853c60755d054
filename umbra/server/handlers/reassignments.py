"""AlterPartitionReassignments (45) and ListPartitionReassignments (46): moving replicas between brokers.

On a cluster the controller records the target replica set; the new replicas follow the leader, and once all
of the target is in sync the controller makes it the replica set (a leader outside it hands over). A single
broker has one replica of every partition: a target of exactly that broker is accepted (nothing to move),
anything else is INVALID_REPLICA_ASSIGNMENT naming the broker that cannot hold it.

v1 (KIP-860) adds ``allow_replication_factor_change``: when false, a target of another size than the partition's
replica set is INVALID_REPLICATION_FACTOR. (kafka-python's admin client asks for v1 when the broker has it and
v0 otherwise; both work.)
"""

from __future__ import annotations

from typing import Any

from umbra.errors import (
    ErrorCode,
    InvalidReplicaAssignment,
    InvalidReplicationFactor,
    KafkaError,
    UnknownTopicOrPartition,
)
from umbra.security.acls import AclOperation
from umbra.server.handlers import RequestContext, handles


async def _reassign_one(ctx: RequestContext, topic: str, index: int, replicas: list[int] | None,
                        allow_replication_factor_change: bool) -> None:
    broker = ctx.broker
    meta = broker.metadata.topic(topic)
    if meta is None or not 0 <= index < meta.partitions:
        raise UnknownTopicOrPartition(f"{topic}-{index} does not exist")
    if replicas is not None and not allow_replication_factor_change:
        current = broker.replicas.state(topic, index).replicas
        if len(replicas) != len(current):
            raise InvalidReplicationFactor(f"{topic}-{index} has {len(current)} replicas; the target {replicas} "
                                           f"would change that, which the request does not allow")
    if not broker.clustered:
        others = [r for r in replicas or () if r != broker.node_id]
        if others:
            raise InvalidReplicaAssignment(f"broker {others[0]} does not exist: this single broker (node "
                                           f"{broker.node_id}) holds every partition")
        if replicas is not None and len(replicas) != 1:
            raise InvalidReplicaAssignment(f"replicas {replicas} name broker {broker.node_id} more than once")
        if replicas is None:
            raise KafkaError(f"{topic}-{index} has no reassignment in progress", ErrorCode.NO_REASSIGNMENT_IN_PROGRESS)
        return
    await broker.control.reassign(topic, index, tuple(replicas) if replicas is not None else None)


@handles(45, "AlterPartitionReassignments", 0, 1)
async def handle_alter_partition_reassignments(ctx: RequestContext, request: Any) -> dict[str, Any]:
    allow_change = bool(request.allow_replication_factor_change) if ctx.api_version >= 1 else True
    try:
        ctx.require_cluster(AclOperation.ALTER)
        if ctx.broker.clustered:
            ctx.broker.require_controller()
    except KafkaError as exc:
        return {"throttle_time_ms": 0, "allow_replication_factor_change": allow_change, "error_code": int(exc.code),
                "error_message": exc.message, "responses": []}
    responses = []
    for topic in request.topics:
        partitions = []
        for p in topic.partitions:
            entry: dict[str, Any] = {"partition_index": p.partition_index, "error_code": 0, "error_message": None}
            try:
                await _reassign_one(ctx, topic.name, p.partition_index,
                                    list(p.replicas) if p.replicas is not None else None, allow_change)
            except KafkaError as exc:
                entry["error_code"], entry["error_message"] = int(exc.code), exc.message
            partitions.append(entry)
        responses.append({"name": topic.name, "partitions": partitions})
    return {"throttle_time_ms": 0, "allow_replication_factor_change": allow_change, "error_code": 0,
            "error_message": None, "responses": responses}


@handles(46, "ListPartitionReassignments", 0, 0)
async def handle_list_partition_reassignments(ctx: RequestContext, request: Any) -> dict[str, Any]:
    ctx.require_cluster(AclOperation.DESCRIBE)
    wanted: dict[str, set[int]] | None = None
    if request.topics is not None:
        wanted = {t.name: set(t.partition_indexes) for t in request.topics}
    topics = []
    for meta in ctx.broker.metadata.topics():
        if wanted is not None and meta.name not in wanted:
            continue
        ongoing = []
        for index, a in enumerate(meta.assignments):
            if a.target and (wanted is None or index in wanted[meta.name]):
                ongoing.append({"partition_index": index, "replicas": list(a.replicas),
                                "adding_replicas": [r for r in a.target if r not in a.isr],
                                "removing_replicas": [r for r in a.replicas if r not in a.target]})
        if ongoing:
            topics.append({"name": meta.name, "partitions": ongoing})
    return {"throttle_time_ms": 0, "error_code": 0, "error_message": None, "topics": topics}
