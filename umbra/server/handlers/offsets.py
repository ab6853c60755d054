"""Committed offsets: OffsetCommit (8), OffsetFetch (9), OffsetDelete (47).

The group coordinator checks the committer and stores the offsets; this module maps versions, checks
that partitions exist and shapes the responses.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from umbra.errors import ErrorCode, KafkaError
from umbra.groups.model import OffsetAndMetadata
from umbra.security.acls import AclOperation, ResourceType
from umbra.server.handlers import RequestContext, handles
from umbra.server.handlers.groups import coordinator

TopicPartition = tuple[str, int]
NO_OFFSET = -1
NO_LEADER_EPOCH = -1


def _partition_exists(ctx: RequestContext, topic: str, partition: int) -> bool:
    meta = ctx.broker.metadata.topic(topic) if topic else None
    return meta is not None and 0 <= partition < meta.partitions


# --- OffsetCommit ----------------------------------------------------------------------------------

@handles(8, "OffsetCommit", 0, 9)
async def handle_offset_commit(ctx: RequestContext, request: Any) -> dict[str, Any]:
    version = ctx.api_version
    # Authorize: READ on the group (else every partition is GROUP_AUTHORIZATION_FAILED), then READ on each topic.
    if not ctx.authorized(AclOperation.READ, ResourceType.GROUP, request.group_id or ""):
        return {"throttle_time_ms": 0, "topics": [
            {"name": t.name, "partitions": [{"partition_index": p.partition_index,
                                             "error_code": int(ErrorCode.GROUP_AUTHORIZATION_FAILED)}
                                            for p in t.partitions or []]} for t in request.topics or []]}
    denied_topics = ctx.denied_topics(AclOperation.READ, (t.name or "" for t in request.topics or []))
    groups = coordinator(ctx)
    now = groups.now_ms()
    generation = request.generation_id_or_member_epoch if version >= 1 else -1
    member_id = (request.member_id or "") if version >= 1 else ""
    instance_id = request.group_instance_id if version >= 7 else None

    requested: list[tuple[str, list[int]]] = []
    errors: dict[TopicPartition, ErrorCode] = {}
    offsets: dict[TopicPartition, OffsetAndMetadata] = {}
    for topic in request.topics or []:
        name = topic.name or ""
        indexes = []
        for p in topic.partitions or []:
            tp = (name, p.partition_index)
            indexes.append(p.partition_index)
            if name in denied_topics:
                errors[tp] = ErrorCode.TOPIC_AUTHORIZATION_FAILED
                continue
            if not _partition_exists(ctx, name, p.partition_index):
                errors[tp] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                continue
            timestamp = p.commit_timestamp if version == 1 and p.commit_timestamp >= 0 else now
            epoch = p.committed_leader_epoch if version >= 6 else NO_LEADER_EPOCH
            offsets[tp] = OffsetAndMetadata(p.committed_offset, epoch, p.committed_metadata or "", timestamp)
            errors.pop(tp, None)
        requested.append((name, indexes))
    if offsets:
        errors.update(groups.commit_offsets(request.group_id or "", generation, member_id, instance_id, offsets,
                                            version))
        if not await ctx.broker.offsets_replicated():  # on a cluster: acknowledged once the ISR has the commit
            # As Kafka: a commit the ISR did not confirm is COORDINATOR_NOT_AVAILABLE (retriable).
            errors.update({tp: ErrorCode.COORDINATOR_NOT_AVAILABLE
                           for tp, code in errors.items() if code == ErrorCode.NONE})
    return {"throttle_time_ms": 0, "topics": [
        {"name": name, "partitions": [{"partition_index": i, "error_code": int(errors[(name, i)])} for i in indexes]}
        for name, indexes in requested]}


# --- OffsetFetch -----------------------------------------------------------------------------------

def _fetch_group(ctx: RequestContext, group_id: str, topics: list[tuple[str, list[int]]] | None,
                 member: tuple[str | None, int] = (None, -1)) -> tuple[ErrorCode, list[dict[str, Any]]]:
    """One group's committed offsets. Authorized: DESCRIBE on the group; topics the principal may not DESCRIBE
    are TOPIC_AUTHORIZATION_FAILED when named, and left out when every topic is asked for. ``member``: the
    (member id, member epoch) of a v9+ fetch, which a consumer-protocol group checks."""
    try:
        ctx.require_group(AclOperation.DESCRIBE, group_id)
        member_error = coordinator(ctx).check_offset_fetcher(group_id, *member)
        if member_error is not ErrorCode.NONE:
            return member_error, []
        denied = ctx.denied_topics(AclOperation.DESCRIBE, (name for name, _ in topics or []))
        wanted = None if topics is None else [(name, i) for name, indexes in topics if name not in denied
                                              for i in indexes]
        found = coordinator(ctx).fetch_offsets(group_id, wanted)
    except KafkaError as exc:
        return exc.code, [{"name": name, "partitions": [_fetched(i, None, exc.code) for i in indexes]}
                          for name, indexes in topics or []]
    if topics is None:
        hidden = ctx.denied_topics(AclOperation.DESCRIBE, (name for name, _ in found))
        found = {tp: value for tp, value in found.items() if tp[0] not in hidden}
    by_topic: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for (name, index), value in found.items():
        by_topic[name].append(_fetched(index, value, ErrorCode.NONE))
    for name, indexes in topics or []:
        if name in denied:
            by_topic[name] += [_fetched(i, None, ErrorCode.TOPIC_AUTHORIZATION_FAILED) for i in indexes]
    return ErrorCode.NONE, [{"name": name, "partitions": partitions} for name, partitions in by_topic.items()]


def _fetched(index: int, value: OffsetAndMetadata | None, error: ErrorCode) -> dict[str, Any]:
    if value is None:
        return {"partition_index": index, "committed_offset": NO_OFFSET, "committed_leader_epoch": NO_LEADER_EPOCH,
                "metadata": "", "error_code": int(error)}
    return {"partition_index": index, "committed_offset": value.offset, "committed_leader_epoch": value.leader_epoch,
            "metadata": value.metadata, "error_code": int(error)}


def _topics(request_topics: Any) -> list[tuple[str, list[int]]] | None:
    if request_topics is None:
        return None
    return [(t.name or "", list(t.partition_indexes or [])) for t in request_topics]


@handles(9, "OffsetFetch", 0, 9)
async def handle_offset_fetch(ctx: RequestContext, request: Any) -> dict[str, Any]:
    version = ctx.api_version
    if version >= 8:
        groups = []
        for group in request.groups or []:
            member = (group.member_id, group.member_epoch) if version >= 9 else (None, -1)
            error, topics = _fetch_group(ctx, group.group_id or "", _topics(group.topics), member)
            groups.append({"group_id": group.group_id, "topics": topics, "error_code": int(error)})
        return {"throttle_time_ms": 0, "groups": groups}
    # v0 and v1 have no null topic list, nor a top-level error: errors go on every partition.
    error, topics = _fetch_group(ctx, request.group_id or "", _topics(request.topics))
    response: dict[str, Any] = {"throttle_time_ms": 0, "topics": topics}
    if version >= 2:
        response["error_code"] = int(error)
    return response


# --- OffsetDelete ----------------------------------------------------------------------------------

@handles(47, "OffsetDelete", 0, 0)
async def handle_offset_delete(ctx: RequestContext, request: Any) -> dict[str, Any]:
    requested = [(t.name or "", [p.partition_index for p in t.partitions or []]) for t in request.topics or []]
    # Authorize: DELETE on the group (request-wide), READ on each topic (its offsets are then left alone).
    ctx.require_group(AclOperation.DELETE, request.group_id or "")
    denied = ctx.denied_topics(AclOperation.READ, (name for name, _ in requested))
    partitions = [(name, i) for name, indexes in requested if name not in denied for i in indexes]
    error, results = coordinator(ctx).delete_offsets(request.group_id or "", partitions)
    if error is not ErrorCode.NONE:
        return {"throttle_time_ms": 0, "error_code": int(error), "topics": []}
    results.update({(name, i): ErrorCode.TOPIC_AUTHORIZATION_FAILED
                    for name, indexes in requested if name in denied for i in indexes})
    for tp in partitions:
        if not _partition_exists(ctx, *tp):
            results[tp] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    return {"throttle_time_ms": 0, "error_code": 0, "topics": [
        {"name": name, "partitions": [{"partition_index": i, "error_code": int(results[(name, i)])} for i in indexes]}
        for name, indexes in requested]}
