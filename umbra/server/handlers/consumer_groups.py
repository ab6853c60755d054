"""The consumer group protocol (KIP-848): ConsumerGroupHeartbeat (68) and ConsumerGroupDescribe (69).

The wire speaks topic ids; the coordinator's state machine (``umbra.groups.consumer``) speaks topic names. This
module maps between them with the broker's metadata, and shapes the responses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from umbra.cluster.group_configs import group_config
from umbra.errors import ErrorCode, KafkaError
from umbra.groups.consumer import HeartbeatError, HeartbeatRequest
from umbra.groups.consumer_model import ConsumerMember, TopicPartitions
from umbra.groups.membership import valid_group_id
from umbra.security.acls import AclOperation, ResourceType
from umbra.server.handlers import RequestContext, handles
from umbra.server.handlers.groups import client_host, coordinator

NOT_REQUESTED_OPERATIONS = -2147483648  # Kafka's "authorized operations not requested"
CLASSIC_MEMBER_TYPE, CONSUMER_MEMBER_TYPE = 0, 1  # ConsumerGroupDescribe v1 MemberType


def _owned(ctx: RequestContext, request_partitions: Any) -> TopicPartitions | None:
    """The member's owned partitions by topic name; those of topics that no longer exist are dropped."""
    if request_partitions is None:
        return None
    owned: TopicPartitions = {}
    for item in request_partitions:
        meta = ctx.broker.metadata.topic_by_id(item.topic_id)
        if meta is not None:
            owned[meta.name] = owned.get(meta.name, frozenset()) | frozenset(item.partitions or [])
    return owned


def _wire_partitions(ctx: RequestContext, assignment: TopicPartitions, with_names: bool) -> list[dict[str, Any]]:
    result = []
    for topic, partitions in sorted(assignment.items()):
        meta = ctx.broker.metadata.topic(topic)
        if meta is None or not partitions:
            continue
        entry: dict[str, Any] = {"topic_id": meta.topic_id, "partitions": sorted(partitions)}
        if with_names:
            entry["topic_name"] = topic
        result.append(entry)
    return result


def _describe_filter(ctx: RequestContext) -> Callable[[str], bool] | None:
    """Kafka resolves a regex subscription to the topics the member may DESCRIBE."""
    if ctx.broker.authorizer is None:
        return None
    return lambda topic: ctx.authorized(AclOperation.DESCRIBE, ResourceType.TOPIC, topic)


@handles(68, "ConsumerGroupHeartbeat", 0, 1)
async def handle_consumer_group_heartbeat(ctx: RequestContext, request: Any) -> dict[str, Any]:
    group_id = request.group_id or ""
    if not ctx.authorized(AclOperation.READ, ResourceType.GROUP, group_id):
        return {"throttle_time_ms": 0, "error_code": int(ErrorCode.GROUP_AUTHORIZATION_FAILED),
                "error_message": f"{ctx.principal} is not authorized to READ group {group_id!r}"}
    version = ctx.api_version
    names = request.subscribed_topic_names
    if names and ctx.denied_topics(AclOperation.DESCRIBE, (n or "" for n in names)):
        # As Kafka 4: a member may not subscribe to (and so learn about) topics it may not DESCRIBE.
        return {"throttle_time_ms": 0, "error_code": int(ErrorCode.TOPIC_AUTHORIZATION_FAILED),
                "error_message": "the subscription names topics this principal is not authorized to DESCRIBE"}
    overrides = group_config(ctx.broker.control, group_id)  # the group's own timeouts, if it sets them
    heartbeat = HeartbeatRequest(
        group_id=group_id, member_id=request.member_id or "", member_epoch=request.member_epoch,
        instance_id=request.instance_id, rack_id=request.rack_id, rebalance_timeout_ms=request.rebalance_timeout_ms,
        subscribed_topic_names=None if names is None else tuple(n or "" for n in names),
        subscribed_topic_regex=request.subscribed_topic_regex if version >= 1 else None,
        server_assignor=request.server_assignor, owned=_owned(ctx, request.topic_partitions),
        client_id=ctx.header.client_id or "", client_host=client_host(ctx), version=version,
        may_describe=_describe_filter(ctx), session_timeout_ms=overrides.consumer_session_timeout_ms,
        heartbeat_interval_ms=overrides.consumer_heartbeat_interval_ms)
    topics = {t.name: t.partitions for t in ctx.broker.metadata.topics() if not t.internal}
    try:
        result = coordinator(ctx).consumer_heartbeat(heartbeat, topics)
    except (HeartbeatError, KafkaError) as exc:
        return {"throttle_time_ms": 0, "error_code": int(exc.code), "error_message": str(exc) or None,
                "member_id": None, "member_epoch": 0, "heartbeat_interval_ms": 0}
    response: dict[str, Any] = {"throttle_time_ms": 0, "error_code": 0, "member_id": result.member_id,
                                "member_epoch": result.member_epoch,
                                "heartbeat_interval_ms": result.heartbeat_interval_ms}
    if result.assignment is not None:
        response["assignment"] = {"topic_partitions": _wire_partitions(ctx, result.assignment, False)}
    return response


def _member(ctx: RequestContext, member: ConsumerMember, target: TopicPartitions, version: int) -> dict[str, Any]:
    described: dict[str, Any] = {
        "member_id": member.member_id, "instance_id": member.instance_id, "rack_id": member.rack_id,
        "member_epoch": member.member_epoch, "client_id": member.client_id, "client_host": member.client_host,
        "subscribed_topic_names": list(member.subscribed_topic_names),
        "subscribed_topic_regex": member.subscribed_topic_regex,
        "assignment": {"topic_partitions": _wire_partitions(ctx, member.assigned, True)},
        "target_assignment": {"topic_partitions": _wire_partitions(ctx, target, True)},
    }
    if version >= 1:
        # A member that still uses the classic protocol (KIP-848's online migration) is described as such.
        described["member_type"] = CLASSIC_MEMBER_TYPE if member.classic is not None else CONSUMER_MEMBER_TYPE
    return described


def _describe(ctx: RequestContext, group_id: str, include_operations: bool) -> dict[str, Any]:
    empty: dict[str, Any] = {"group_id": group_id, "group_state": "", "group_epoch": 0, "assignment_epoch": 0,
                             "assignor_name": "", "members": [], "error_code": 0}

    def error(code: ErrorCode, message: str) -> dict[str, Any]:
        return {**empty, "error_code": int(code), "error_message": message}

    if not ctx.authorized(AclOperation.DESCRIBE, ResourceType.GROUP, group_id):
        return error(ErrorCode.GROUP_AUTHORIZATION_FAILED,
                     f"{ctx.principal} is not authorized to DESCRIBE group {group_id!r}")
    if not valid_group_id(group_id):
        return error(ErrorCode.INVALID_GROUP_ID, "the group id is empty or too long")
    try:
        group = coordinator(ctx).describe_group(group_id)
    except KafkaError as exc:
        return error(exc.code, str(exc))
    if group is None:
        return error(ErrorCode.GROUP_ID_NOT_FOUND, f"Group {group_id} not found.")
    data = group.consumer
    if data is None:  # Kafka's answer for a classic group
        return error(ErrorCode.GROUP_ID_NOT_FOUND, f"Group {group_id} is not a consumer group.")
    described = {**empty, "group_state": data.state().value, "group_epoch": data.group_epoch,
                 "assignment_epoch": data.assignment_epoch, "assignor_name": data.assignor_name or "uniform",
                 "members": [_member(ctx, m, data.target.get(m.member_id, {}), ctx.api_version)
                             for m in data.members.values()]}
    used = {t for m in data.members.values()
            for t in (*m.subscribed_topic_names, *m.assigned, *data.target.get(m.member_id, {}))}
    if ctx.denied_topics(AclOperation.DESCRIBE, used):  # as Kafka 4: no topic names the principal may not see
        return error(ErrorCode.TOPIC_AUTHORIZATION_FAILED,
                     "the group uses topics this principal is not authorized to DESCRIBE")
    if include_operations:
        described["authorized_operations"] = ctx.authorized_operations(ResourceType.GROUP, group_id)
    return described


@handles(69, "ConsumerGroupDescribe", 0, 1)
async def handle_consumer_group_describe(ctx: RequestContext, request: Any) -> dict[str, Any]:
    include = bool(request.include_authorized_operations)
    return {"throttle_time_ms": 0,
            "groups": [_describe(ctx, group_id or "", include) for group_id in request.group_ids or []]}

