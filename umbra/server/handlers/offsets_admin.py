"""ListOffsets (2), OffsetForLeaderEpoch (23) and DeleteRecords (21): reading and moving log positions."""

from __future__ import annotations

import asyncio
from typing import Any

from umbra.errors import KafkaError, OffsetOutOfRange
from umbra.security.acls import AclOperation
from umbra.server.handlers import RequestContext, handles

LATEST = -1
EARLIEST = -2
MAX_TIMESTAMP = -3
EARLIEST_LOCAL = -4
LATEST_TIERED = -5
READ_COMMITTED = 1


@handles(2, "ListOffsets", 1, 10)
async def handle_list_offsets(ctx: RequestContext, request: Any) -> dict[str, Any]:
    broker = ctx.broker
    topics = []
    for topic in request.topics:
        partitions = []
        for p in topic.partitions:
            entry: dict[str, Any] = {"partition_index": p.partition_index, "error_code": 0, "timestamp": -1,
                                     "offset": -1, "leader_epoch": -1}
            try:
                ctx.require_topic(AclOperation.DESCRIBE, topic.name)
                partition = broker.replicas.leader_partition(topic.name, p.partition_index,
                                                             getattr(p, "current_leader_epoch", -1))
                entry["leader_epoch"] = partition.leader_epoch
                log = partition.log
                ts = p.timestamp
                if ts == LATEST:
                    isolation = request.isolation_level if ctx.api_version >= 2 else 0
                    entry["offset"] = log.last_stable_offset if isolation == READ_COMMITTED else log.high_watermark
                elif ts in (EARLIEST, EARLIEST_LOCAL):
                    entry["offset"] = log.log_start_offset
                elif ts == LATEST_TIERED:
                    entry["offset"] = log.log_start_offset - 1
                elif ts == MAX_TIMESTAMP:
                    found = log.max_timestamp()
                    if found is not None:
                        entry["offset"], entry["timestamp"] = found
                elif ts >= 0:
                    at_time = log.offset_for_timestamp(ts)
                    if at_time is not None:
                        entry["offset"], entry["timestamp"] = at_time
                else:
                    raise KafkaError(f"timestamp {ts} is not a valid ListOffsets target")
            except KafkaError as exc:
                entry["error_code"] = int(exc.code)
                entry["leader_epoch"] = -1
            partitions.append(entry)
        topics.append({"name": topic.name, "partitions": partitions})
    return {"throttle_time_ms": 0, "topics": topics}


@handles(23, "OffsetForLeaderEpoch", 2, 4)
async def handle_offset_for_leader_epoch(ctx: RequestContext, request: Any) -> dict[str, Any]:
    broker = ctx.broker
    # Followers have CLUSTER_ACTION; consumers checking for truncation (KIP-320) need DESCRIBE on the topic.
    cluster_action = ctx.authorized_cluster(AclOperation.CLUSTER_ACTION)
    topics = []
    for topic in request.topics:
        partitions = []
        for p in topic.partitions:
            entry: dict[str, Any] = {"error_code": 0, "partition": p.partition, "leader_epoch": -1, "end_offset": -1}
            try:
                if not cluster_action:
                    ctx.require_topic(AclOperation.DESCRIBE, topic.topic)
                partition = broker.replicas.leader_partition(topic.topic, p.partition,
                                                             getattr(p, "current_leader_epoch", -1))
                entry["leader_epoch"], entry["end_offset"] = partition.log.end_offset_for_leader_epoch(
                    p.leader_epoch, partition.leader_epoch)
            except KafkaError as exc:
                entry["error_code"] = int(exc.code)
            partitions.append(entry)
        topics.append({"topic": topic.topic, "partitions": partitions})
    return {"throttle_time_ms": 0, "topics": topics}


@handles(21, "DeleteRecords", 0, 2)
async def handle_delete_records(ctx: RequestContext, request: Any) -> dict[str, Any]:
    broker = ctx.broker
    topics = []
    for topic in request.topics:
        partitions = []
        for p in topic.partitions:
            entry: dict[str, Any] = {"partition_index": p.partition_index, "low_watermark": -1, "error_code": 0}
            try:
                ctx.require_topic(AclOperation.DELETE, topic.name)
                meta = broker.metadata.require_topic(topic.name)
                broker.check_writable(meta)
                log = broker.replicas.leader_partition(topic.name, p.partition_index).log
                offset = log.high_watermark if p.offset == -1 else p.offset
                if offset < 0 or offset > log.high_watermark:
                    raise OffsetOutOfRange(f"offset {offset} is outside 0..{log.high_watermark} (high watermark)")
                if offset > log.log_start_offset:  # deletes segment files and writes a checkpoint: off the loop
                    await asyncio.to_thread(log.advance_log_start_offset, offset)
                entry["low_watermark"] = log.log_start_offset
            except KafkaError as exc:
                entry["error_code"] = int(exc.code)
            partitions.append(entry)
        topics.append({"name": topic.name, "partitions": partitions})
    return {"throttle_time_ms": 0, "topics": topics}
