"""DescribeLogDirs (35), ListPartitionReassignments (46) and DescribeProducers (61): read-only views that
admin tools (kafka-log-dirs, kafka-topics --describe, kafka-transactions, UIs) ask every broker for."""

from __future__ import annotations

import os
from typing import Any

from umbra.errors import KafkaError
from umbra.security.acls import AclOperation
from umbra.server.handlers import RequestContext, handles


@handles(35, "DescribeLogDirs", 0, 4)
async def handle_describe_log_dirs(ctx: RequestContext, request: Any) -> dict[str, Any]:
    """The broker has one log directory, its data dir; a null topic list means every partition."""
    ctx.require_cluster(AclOperation.DESCRIBE)  # denied: CLUSTER_AUTHORIZATION_FAILED and no results, as Kafka
    broker = ctx.broker
    wanted: dict[str, list[int]] | None = None
    if request.topics is not None:
        wanted = {t.topic: list(t.partitions) for t in request.topics}
    topics = []
    for meta in sorted(broker.metadata.topics(), key=lambda t: t.name):
        if wanted is not None and meta.name not in wanted:
            continue
        indexes = range(meta.partitions) if wanted is None else wanted[meta.name]
        partitions = []
        for index in indexes:
            log_ = broker.logs.get(meta.name, index) if 0 <= index < meta.partitions else None
            if log_ is not None:  # unknown partitions are left out, as Kafka does
                partitions.append({"partition_index": index, "partition_size": log_.size_in_bytes,
                                   "offset_lag": 0, "is_future_key": False})
        if partitions:
            topics.append({"name": meta.name, "partitions": partitions})
    data_dir = str(broker.logs.data_dir.resolve())
    total = usable = -1
    try:
        stats = os.statvfs(data_dir)
        total, usable = stats.f_blocks * stats.f_frsize, stats.f_bavail * stats.f_frsize
    except OSError:
        pass
    return {"throttle_time_ms": 0, "error_code": 0,
            "results": [{"error_code": 0, "log_dir": data_dir, "topics": topics, "total_bytes": total,
                         "usable_bytes": usable}]}


@handles(61, "DescribeProducers", 0, 0)
async def handle_describe_producers(ctx: RequestContext, request: Any) -> dict[str, Any]:
    """Idempotent producers with state in each partition. Last timestamps are not kept (-1), and without
    transactions there is no coordinator epoch or open transaction (-1)."""
    broker = ctx.broker
    topics = []
    for topic in request.topics:
        partitions = []
        for index in topic.partition_indexes:
            entry: dict[str, Any] = {"partition_index": index, "error_code": 0, "error_message": None,
                                     "active_producers": []}
            try:
                ctx.require_topic(AclOperation.READ, topic.name)
                log_ = broker.get_log(topic.name, index)
                entry["active_producers"] = [
                    {"producer_id": pid, "producer_epoch": epoch, "last_sequence": sequence, "last_timestamp": -1,
                     "coordinator_epoch": -1, "current_txn_start_offset": -1}
                    for pid, epoch, sequence in sorted(log_.active_producers())]
            except KafkaError as exc:
                entry["error_code"], entry["error_message"] = int(exc.code), str(exc)
            partitions.append(entry)
        topics.append({"name": topic.name, "partitions": partitions})
    return {"throttle_time_ms": 0, "topics": topics}

