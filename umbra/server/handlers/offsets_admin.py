"""ListOffsets (2), OffsetForLeaderEpoch (23) and DeleteRecords (21): reading and moving log positions.

Every version Kafka 3.9 accepts is served, the oldest included: ListOffsets v0 (a list of offsets,
``old_style_offsets``) and OffsetForLeaderEpoch v0-1 are still sent by tools such as Burrow (Sarama)."""

from __future__ import annotations

import asyncio
from typing import Any

from umbra.errors import KafkaError, OffsetOutOfRange
from umbra.security.acls import AclOperation
from umbra.server.handlers import RequestContext, handles
from umbra.storage.log import Log

LATEST = -1
EARLIEST = -2
MAX_TIMESTAMP = -3
EARLIEST_LOCAL = -4
LATEST_TIERED = -5
READ_COMMITTED = 1


@handles(2, "ListOffsets", 0, 10)
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
                if ctx.api_version == 0:
                    entry["old_style_offsets"] = _old_style_offsets(log, ts, entry["offset"], p.max_num_offsets)
            except KafkaError as exc:
                entry["error_code"] = int(exc.code)
                entry["leader_epoch"] = -1
                entry["old_style_offsets"] = []
            partitions.append(entry)
        topics.append({"name": topic.name, "partitions": partitions})
    return {"throttle_time_ms": 0, "topics": topics}


def _old_style_offsets(log: Log, timestamp: int, offset: int, max_num_offsets: int) -> list[int]:
    """ListOffsets v0 (Burrow and other pre-0.10.1 tools): a list of offsets, newest first, at most
    ``max_num_offsets``. For the latest it is the high watermark (then the log start, when more are asked for
    and it differs), for the earliest the log start. v0 meant "offsets before this time", in Kafka by segment
    modification times: here the first offset at or after the timestamp (every record before it is older),
    or the high watermark when no record is that new."""
    if max_num_offsets <= 0:
        return []
    if timestamp == LATEST:
        offsets = [log.high_watermark, log.log_start_offset]
    elif timestamp >= 0 and offset < 0:
        offsets = [log.high_watermark]
    else:
        offsets = [offset]
    return sorted(set(offsets), reverse=True)[:max_num_offsets]


@handles(23, "OffsetForLeaderEpoch", 0, 4)
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
