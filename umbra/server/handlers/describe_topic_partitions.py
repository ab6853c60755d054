"""DescribeTopicPartitions (75, KIP-966): Metadata's topic and partition view, paged.

Kafka's semantics: an empty topic list means every topic the principal may DESCRIBE (the others are left out, as
Metadata does); a named topic it may not DESCRIBE is TOPIC_AUTHORIZATION_FAILED, whether it exists or not.
Topics come in name order from the cursor's topic (at the cursor's partition) on; the answer holds at most
``response_partition_limit`` partitions (at most 2000, Kafka's ``max.request.partition.size.limit``), and
``next_cursor`` says where the next page starts. umbra has no eligible leader replicas (KIP-966's ELR needs
Kafka's unclean-recovery controller): those lists are empty.
"""

from __future__ import annotations

import uuid
from typing import Any, Protocol

from umbra.cluster.metadata import TopicMetadata, validate_topic_name
from umbra.errors import ErrorCode, InvalidRequest, KafkaError
from umbra.security.acls import AclOperation, ResourceType
from umbra.server.handlers import RequestContext, handles
from umbra.server.handlers.metadata import topic_entry as metadata_topic_entry

MAX_PARTITIONS_PER_RESPONSE = 2000  # Kafka's max.request.partition.size.limit default
_ZERO_UUID = uuid.UUID(int=0)


def _error_topic(name: str, code: ErrorCode) -> dict[str, Any]:
    return {"error_code": int(code), "name": name, "topic_id": _ZERO_UUID, "is_internal": False, "partitions": [],
            "topic_authorized_operations": -2147483648}  # Kafka's "not asked" value for the operations


def _unknown_topic(name: str) -> dict[str, Any]:
    try:
        validate_topic_name(name)
    except KafkaError:
        return _error_topic(name, ErrorCode.INVALID_TOPIC_EXCEPTION)
    return _error_topic(name, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)


def _topic_page(ctx: RequestContext, meta: TopicMetadata, first: int, limit: int) -> tuple[dict[str, Any], int]:
    """The topic with its partitions ``first``.. (at most ``limit``), and the first partition left for the next
    page (-1: none)."""
    entry = metadata_topic_entry(ctx, meta)  # Metadata's view of leaders, epochs, replicas, ISR and offline ones
    partitions = entry["partitions"][first:first + limit]
    for p in partitions:
        p["eligible_leader_replicas"] = []
        p["last_known_elr"] = []
    entry["partitions"] = partitions
    entry.pop("authorized_operations", None)  # Metadata's name for it; this API's is topic_authorized_operations
    entry["topic_authorized_operations"] = ctx.authorized_operations(ResourceType.TOPIC, meta.name)
    following = first + len(partitions)
    return entry, following if following < meta.partitions else -1


class Cursor(Protocol):
    """The request's cursor (KIP-966): where the previous page ended."""

    topic_name: str
    partition_index: int


def _check_cursor(cursor: Cursor | None, names: set[str], every: bool) -> None:
    if cursor is None:
        return
    if not every and cursor.topic_name not in names:
        raise InvalidRequest(f"the topic list must contain the cursor's topic {cursor.topic_name!r}")
    if cursor.partition_index < 0:
        raise InvalidRequest(f"the cursor's partition {cursor.partition_index} is not a partition index")


@handles(75, "DescribeTopicPartitions", 0, 0)
async def handle_describe_topic_partitions(ctx: RequestContext, request: Any) -> dict[str, Any]:
    every = not request.topics
    cursor = request.cursor
    cursor_topic = cursor.topic_name if cursor is not None else ""
    if every:
        names = {meta.name for meta in ctx.broker.metadata.topics()}
    else:
        names = {t.name for t in request.topics if t.name is not None}
    try:
        _check_cursor(cursor, names, every)
    except KafkaError as exc:  # as Kafka's error response: the error on every topic named, nothing else
        return {"throttle_time_ms": 0, "next_cursor": None,
                "topics": [_error_topic(t.name, exc.code) for t in request.topics]}
    denied = ctx.denied_topics(AclOperation.DESCRIBE, names)
    remaining = max(min(MAX_PARTITIONS_PER_RESPONSE, request.response_partition_limit), 1)
    topics: list[dict[str, Any]] = []
    next_cursor: dict[str, Any] | None = None
    for name in sorted(n for n in names if n >= cursor_topic and n not in denied):
        if remaining == 0:  # the page is full: the next one starts with this topic
            next_cursor = {"topic_name": name, "partition_index": 0}
            break
        meta = ctx.broker.metadata.topic(name)
        if meta is None:
            topics.append(_unknown_topic(name))
            continue
        first = cursor.partition_index if cursor is not None and name == cursor_topic else 0
        entry, following = _topic_page(ctx, meta, first, remaining)
        topics.append(entry)
        if following >= 0:
            next_cursor = {"topic_name": name, "partition_index": following}
            break
        remaining -= len(entry["partitions"])
    if not every:  # named topics it may not DESCRIBE, without saying whether they exist
        topics.extend(_error_topic(name, ErrorCode.TOPIC_AUTHORIZATION_FAILED) for name in sorted(denied)
                      if name >= cursor_topic)
    return {"throttle_time_ms": 0, "topics": topics, "next_cursor": next_cursor}
