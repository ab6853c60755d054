"""DescribeLogDirs (35) and DescribeProducers (61): read-only views that admin tools (kafka-log-dirs,
kafka-topics --describe, kafka-transactions, UIs) ask every broker for; and AlterReplicaLogDirs (34), the
change that goes with DescribeLogDirs."""

from __future__ import annotations

import os
from typing import Any

from umbra.errors import ErrorCode, KafkaError
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
    data_dir = _log_dir(ctx)
    total = usable = -1
    try:
        stats = os.statvfs(data_dir)
        total, usable = stats.f_blocks * stats.f_frsize, stats.f_bavail * stats.f_frsize
    except OSError:
        pass
    return {"throttle_time_ms": 0, "error_code": 0,
            "results": [{"error_code": 0, "log_dir": data_dir, "topics": topics, "total_bytes": total,
                         "usable_bytes": usable}]}


def _log_dir(ctx: RequestContext) -> str:
    """The broker's one log directory, its data dir, as DescribeLogDirs names it."""
    return str(ctx.broker.logs.data_dir.resolve())


def _same_dir(path: str, log_dir: str) -> bool:
    try:
        return os.path.realpath(path) == log_dir
    except (OSError, ValueError):  # a path the OS cannot even resolve (e.g. a NUL byte) is no directory of ours
        return False


@handles(34, "AlterReplicaLogDirs", 0, 2)
async def handle_alter_replica_log_dirs(ctx: RequestContext, request: Any) -> dict[str, Any]:
    """Move replicas of this broker between its log directories. There is one: moving a replica to it is done
    already (NONE); any other path is LOG_DIR_NOT_FOUND; a partition this broker does not have is
    UNKNOWN_TOPIC_OR_PARTITION (Kafka's REPLICA_NOT_AVAILABLE is for a replica it should have but lost)."""
    denied = not ctx.authorized_cluster(AclOperation.ALTER)  # Kafka answers every partition with the error
    broker = ctx.broker
    log_dir = _log_dir(ctx)
    results: dict[str, list[dict[str, int]]] = {}
    for directory in request.dirs:
        known_dir = _same_dir(directory.path, log_dir)
        for topic in directory.topics:
            meta = broker.metadata.topic(topic.name)
            for index in topic.partitions:
                if denied:
                    code = ErrorCode.CLUSTER_AUTHORIZATION_FAILED
                elif meta is None or not 0 <= index < meta.partitions or not _has_replica(ctx, topic.name, index):
                    code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                elif not known_dir:
                    code = ErrorCode.LOG_DIR_NOT_FOUND
                else:
                    code = ErrorCode.NONE
                results.setdefault(topic.name, []).append({"partition_index": index, "error_code": int(code)})
    return {"throttle_time_ms": 0,
            "results": [{"topic_name": name, "partitions": partitions} for name, partitions in results.items()]}


def _has_replica(ctx: RequestContext, topic: str, index: int) -> bool:
    """Does this broker hold a replica of the partition (on a cluster, is it in the replica set)?"""
    if not ctx.broker.clustered:
        return True
    return ctx.broker.node_id in ctx.broker.replicas.state(topic, index).replicas


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

