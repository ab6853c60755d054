"""Consumer-group membership APIs: FindCoordinator (10), JoinGroup (11), Heartbeat (12), LeaveGroup (13),
SyncGroup (14), DescribeGroups (15), ListGroups (16), DeleteGroups (42).

Each handler turns the request into a call on the broker's ``GroupCoordinator`` and the result into the
response of the request's version. Offsets are in ``offsets.py``.
"""

from __future__ import annotations

import logging
from typing import Any

from umbra.errors import CoordinatorNotAvailable, ErrorCode, NotCoordinator
from umbra.groups.coordinator import GroupCoordinator
from umbra.groups.membership import JoinRequest, valid_group_id
from umbra.groups.model import GroupState
from umbra.security.acls import AclOperation, ResourceType
from umbra.server.handlers import RequestContext, handles
from umbra.server.handlers.metadata import authorized_operations

log = logging.getLogger("umbra.groups")

KEY_TYPE_GROUP = 0
KEY_TYPE_TRANSACTION = 1


def coordinator(ctx: RequestContext) -> GroupCoordinator:
    groups = ctx.broker.groups
    if groups is None:
        raise CoordinatorNotAvailable("the group coordinator is not running")
    if ctx.broker.clustered:
        found = ctx.broker.coordinator_address(ctx.listener)
        if found is None:
            raise CoordinatorNotAvailable("the cluster's __consumer_offsets has no live leader")
        if found[0] != ctx.broker.node_id:
            raise NotCoordinator(f"broker {found[0]} is the group coordinator, not {ctx.broker.node_id}")
    return groups


def client_host(ctx: RequestContext) -> str:
    host = ctx.peer.rsplit(":", 1)[0] if ctx.peer.count(":") == 1 else ctx.peer
    return "/" + host.strip("[]")


# --- FindCoordinator -------------------------------------------------------------------------------

def _find(ctx: RequestContext, key: str, key_type: int) -> dict[str, Any]:
    if key_type == KEY_TYPE_GROUP and not ctx.authorized(AclOperation.DESCRIBE, ResourceType.GROUP, key):
        return {"error_code": int(ErrorCode.GROUP_AUTHORIZATION_FAILED), "node_id": -1, "host": "", "port": -1,
                "error_message": f"{ctx.principal} is not authorized to DESCRIBE group {key!r}"}
    if key_type == KEY_TYPE_TRANSACTION and not ctx.authorized(AclOperation.DESCRIBE, ResourceType.TRANSACTIONAL_ID,
                                                               key):
        return {"error_code": int(ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED), "node_id": -1, "host": "",
                "port": -1, "error_message": f"{ctx.principal} is not authorized to DESCRIBE transactional id {key!r}"}
    if key_type == KEY_TYPE_TRANSACTION:
        # Until transactions exist, an error that clients treat as fatal: COORDINATOR_NOT_AVAILABLE is retried
        # for ever (librdkafka's init_transactions() hung). librdkafka and aiokafka both give up at once on
        # TRANSACTIONAL_ID_AUTHORIZATION_FAILED, and show this message.
        return {"error_code": int(ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED), "node_id": -1, "host": "",
                "port": -1, "error_message": "transactions are not supported by this broker (umbra) yet"}
    address = ctx.broker.coordinator_address(ctx.listener)
    if address is None:
        return {"error_code": int(ErrorCode.COORDINATOR_NOT_AVAILABLE), "node_id": -1, "host": "", "port": -1,
                "error_message": "the cluster's __consumer_offsets has no live leader yet"}
    node_id, host, port = address
    found = {"error_code": 0, "error_message": None, "node_id": node_id, "host": host, "port": port}
    if key_type != KEY_TYPE_GROUP:
        return {**found, "error_code": int(ErrorCode.INVALID_REQUEST), "node_id": -1, "host": "", "port": -1,
                "error_message": f"unknown coordinator key type {key_type}"}
    if not valid_group_id(key):
        return {**found, "error_code": int(ErrorCode.INVALID_REQUEST), "node_id": -1, "host": "", "port": -1,
                "error_message": "the group id is empty or too long"}
    return found


@handles(10, "FindCoordinator", 0, 6)
async def handle_find_coordinator(ctx: RequestContext, request: Any) -> dict[str, Any]:
    key_type = request.key_type if ctx.api_version >= 1 else KEY_TYPE_GROUP
    if ctx.api_version >= 4:
        coordinators = [{"key": key, **_find(ctx, key, key_type)} for key in request.coordinator_keys or []]
        return {"throttle_time_ms": 0, "coordinators": coordinators}
    return {"throttle_time_ms": 0, **_find(ctx, request.key, key_type)}


# --- JoinGroup -------------------------------------------------------------------------------------

@handles(11, "JoinGroup", 0, 9)
async def handle_join_group(ctx: RequestContext, request: Any) -> dict[str, Any]:
    ctx.require_group(AclOperation.READ, request.group_id or "")
    version = ctx.api_version
    rebalance_timeout = request.rebalance_timeout_ms if version >= 1 else -1
    if rebalance_timeout is None or rebalance_timeout <= 0:
        rebalance_timeout = request.session_timeout_ms  # v0 has no rebalance timeout: Kafka uses the session's
    join = JoinRequest(
        group_id=request.group_id or "",
        member_id=request.member_id or "",
        group_instance_id=request.group_instance_id if version >= 5 else None,
        session_timeout_ms=request.session_timeout_ms,
        rebalance_timeout_ms=rebalance_timeout,
        protocol_type=request.protocol_type or "",
        protocols=[(p.name or "", bytes(p.metadata or b"")) for p in request.protocols or []],
        client_id=ctx.header.client_id or "",
        client_host=client_host(ctx),
        require_known_member_id=version >= 4,
    )
    groups = coordinator(ctx)
    existing = groups.describe_group(join.group_id)
    topics = None
    if existing is not None and existing.consumer is not None:
        # A classic member of a consumer group (KIP-848's online migration): the server assigns it these topics.
        topics = {t.name: t.partitions for t in ctx.broker.metadata.topics() if not t.internal}
    result = await groups.join_group(join, topics)
    ok = result.error is ErrorCode.NONE
    response: dict[str, Any] = {
        "throttle_time_ms": 0,
        "error_code": int(result.error),
        "generation_id": result.generation_id if ok else -1,
        "protocol_name": result.protocol_name if ok and result.protocol_name is not None else
        (None if version >= 7 else ""),
        "leader": result.leader_id if ok else "",
        "member_id": result.member_id,
        "members": [{"member_id": member_id, "group_instance_id": instance_id, "metadata": metadata}
                    for member_id, instance_id, metadata in result.members],
    }
    if version >= 7:
        response["protocol_type"] = result.protocol_type if ok else None
    if version >= 9:
        response["skip_assignment"] = result.skip_assignment
    return response


# --- SyncGroup -------------------------------------------------------------------------------------

@handles(14, "SyncGroup", 0, 5)
async def handle_sync_group(ctx: RequestContext, request: Any) -> dict[str, Any]:
    ctx.require_group(AclOperation.READ, request.group_id or "")
    version = ctx.api_version
    assignments = {a.member_id: bytes(a.assignment or b"") for a in request.assignments or []}
    result = await coordinator(ctx).sync_group(
        request.group_id or "", request.generation_id, request.member_id or "",
        request.group_instance_id if version >= 3 else None,
        request.protocol_type if version >= 5 else None,
        request.protocol_name if version >= 5 else None,
        assignments)
    response: dict[str, Any] = {"throttle_time_ms": 0, "error_code": int(result.error),
                                "assignment": result.assignment if result.error is ErrorCode.NONE else b""}
    if version >= 5:
        response["protocol_type"] = result.protocol_type
        response["protocol_name"] = result.protocol_name
    return response


# --- Heartbeat -------------------------------------------------------------------------------------

@handles(12, "Heartbeat", 0, 4)
async def handle_heartbeat(ctx: RequestContext, request: Any) -> dict[str, Any]:
    ctx.require_group(AclOperation.READ, request.group_id or "")
    error = coordinator(ctx).heartbeat(request.group_id or "", request.generation_id, request.member_id or "",
                                       request.group_instance_id if ctx.api_version >= 3 else None)
    return {"throttle_time_ms": 0, "error_code": int(error)}


# --- LeaveGroup ------------------------------------------------------------------------------------

@handles(13, "LeaveGroup", 0, 5)
async def handle_leave_group(ctx: RequestContext, request: Any) -> dict[str, Any]:
    group_id = request.group_id or ""
    ctx.require_group(AclOperation.READ, group_id)
    if ctx.api_version < 3:
        error, errors = coordinator(ctx).leave_group(group_id, [(request.member_id or "", None)])
        return {"throttle_time_ms": 0, "error_code": int(error if error is not ErrorCode.NONE else errors[0])}
    leaving = [(m.member_id or "", m.group_instance_id) for m in request.members or []]
    for member in request.members or []:
        if ctx.api_version >= 5 and member.reason:
            log.info("group %s: member %s leaves: %.200s", group_id, member.member_id, member.reason)
    error, errors = coordinator(ctx).leave_group(group_id, leaving)
    members = [{"member_id": member_id, "group_instance_id": instance_id, "error_code": int(code)}
               for (member_id, instance_id), code in zip(leaving, errors, strict=True)]
    return {"throttle_time_ms": 0, "error_code": int(error), "members": members}


# --- DescribeGroups, ListGroups, DeleteGroups ------------------------------------------------------

def _describe(ctx: RequestContext, group_id: str, include_operations: bool = False) -> dict[str, Any]:
    version = ctx.api_version
    empty: dict[str, Any] = {"group_id": group_id, "error_code": 0, "group_state": GroupState.DEAD.value,
                             "protocol_type": "", "protocol_data": "", "members": []}
    # authorized_operations is set only for a described group when asked (else the codec writes "not requested").
    if not ctx.authorized(AclOperation.DESCRIBE, ResourceType.GROUP, group_id):
        return {**empty, "error_code": int(ErrorCode.GROUP_AUTHORIZATION_FAILED)}
    if not valid_group_id(group_id):
        return {**empty, "error_code": int(ErrorCode.INVALID_GROUP_ID)}
    group = coordinator(ctx).describe_group(group_id)
    if group is not None and group.consumer is not None:
        # As Kafka 4: DescribeGroups describes classic groups only; a consumer-protocol group is "not found".
        if version >= 6:
            return {**empty, "error_code": int(ErrorCode.GROUP_ID_NOT_FOUND),
                    "error_message": f"Group {group_id} is not a classic group."}
        return empty
    if group is None:
        if version >= 6:
            return {**empty, "error_code": int(ErrorCode.GROUP_ID_NOT_FOUND),
                    "error_message": f"group {group_id} not found"}
        return empty
    stable = group.is_(GroupState.STABLE)
    protocol = group.protocol_name or ""
    members = [{"member_id": m.member_id, "group_instance_id": m.group_instance_id, "client_id": m.client_id,
                "client_host": m.client_host,
                "member_metadata": m.metadata_for(protocol) if stable else b"",
                "member_assignment": m.assignment if stable else b""} for m in group.members.values()]
    described = {**empty, "group_state": group.state.value, "protocol_type": group.protocol_type or "",
                 "protocol_data": protocol if stable else "", "members": members}
    if include_operations and version >= 3:  # KIP-430
        described["authorized_operations"] = authorized_operations(ctx, ResourceType.GROUP, group_id)
    return described


@handles(15, "DescribeGroups", 0, 6)
async def handle_describe_groups(ctx: RequestContext, request: Any) -> dict[str, Any]:
    include = ctx.api_version >= 3 and bool(request.include_authorized_operations)
    return {"throttle_time_ms": 0,
            "groups": [_describe(ctx, group_id or "", include) for group_id in request.groups or []]}


@handles(16, "ListGroups", 0, 5)
async def handle_list_groups(ctx: RequestContext, request: Any) -> dict[str, Any]:
    states = (request.states_filter or []) if ctx.api_version >= 4 else []
    types = (request.types_filter or []) if ctx.api_version >= 5 else []
    try:
        listed = coordinator(ctx).list_groups(states, types)
    except NotCoordinator:  # as in Kafka, each broker lists the groups it coordinates: here, none
        listed = []
    if not ctx.authorized_cluster(AclOperation.DESCRIBE):  # then only the groups it may DESCRIBE, and no error
        listed = [g for g in listed if ctx.authorized(AclOperation.DESCRIBE, ResourceType.GROUP, g.group_id)]
    return {"throttle_time_ms": 0, "error_code": 0,
            "groups": [{"group_id": g.group_id, "protocol_type": g.protocol_type, "group_state": g.state,
                        "group_type": g.group_type} for g in listed]}


@handles(42, "DeleteGroups", 0, 2)
async def handle_delete_groups(ctx: RequestContext, request: Any) -> dict[str, Any]:
    names = list(dict.fromkeys(name or "" for name in request.groups_names or []))
    allowed = [name for name in names if ctx.authorized(AclOperation.DELETE, ResourceType.GROUP, name)]
    results = coordinator(ctx).delete_groups(allowed) if allowed else {}
    results.update({name: ErrorCode.GROUP_AUTHORIZATION_FAILED for name in names if name not in allowed})
    return {"throttle_time_ms": 0, "results": [{"group_id": name, "error_code": int(results[name])} for name in names]}
