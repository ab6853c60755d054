"""ElectLeaders (43): move a partition's leadership to its preferred replica (the first of its replica set), or,
with an UNCLEAN election, to any live replica when it has no leader.

A single broker leads every partition it has: every election there is ELECTION_NOT_NEEDED. On a cluster the
controller records the preferred replica as leader at the next epoch (the brokers learn it from etcd, as after
any leadership change), when that replica is alive and in sync; else PREFERRED_LEADER_NOT_AVAILABLE. umbra never
elects a replica outside the ISR: an UNCLEAN election of a partition without a leader is
ELIGIBLE_LEADERS_NOT_AVAILABLE. As in Kafka, a request with no partitions (null) elects every partition and
leaves those that needed no election out of the answer.
"""

from __future__ import annotations

import enum
from typing import Any

from umbra.cluster.control import ControlPlaneError
from umbra.errors import ErrorCode, InvalidRequest, KafkaError, UnknownTopicOrPartition
from umbra.security.acls import AclOperation
from umbra.server.handlers import RequestContext, handles


class ElectionType(enum.IntEnum):
    PREFERRED = 0
    UNCLEAN = 1


def _election_type(ctx: RequestContext, request: Any) -> ElectionType:
    if ctx.api_version == 0:  # v0 has no field: preferred elections only
        return ElectionType.PREFERRED
    try:
        return ElectionType(request.election_type)
    except ValueError:
        raise InvalidRequest(f"unknown election type {request.election_type}") from None


async def _elect(ctx: RequestContext, election: ElectionType, topic: str, index: int) -> None:
    """One partition's election; raises the KafkaError that is its answer unless a leader was elected."""
    broker = ctx.broker
    meta = broker.metadata.topic(topic)
    if meta is None or not 0 <= index < meta.partitions:
        raise UnknownTopicOrPartition(f"{topic}-{index} does not exist")
    if not broker.clustered:
        raise KafkaError(f"broker {broker.node_id}, the only replica, leads {topic}-{index}",
                         ErrorCode.ELECTION_NOT_NEEDED)
    state = broker.replicas.state(topic, index)
    alive = {b.node_id for b in broker.control.view().alive_brokers()}
    if election is ElectionType.UNCLEAN:
        if state.leader in alive:
            raise KafkaError(f"{topic}-{index} has a leader, broker {state.leader}", ErrorCode.ELECTION_NOT_NEEDED)
        raise KafkaError(f"{topic}-{index} has no live in-sync replica, and umbra does not elect a replica outside "
                         f"the ISR", ErrorCode.ELIGIBLE_LEADERS_NOT_AVAILABLE)
    try:
        await broker.control.elect_preferred_leader(topic, index)
    except ControlPlaneError as exc:
        raise KafkaError(f"{topic}-{index}: {exc}", ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE) from None


def _every_partition(ctx: RequestContext) -> list[tuple[str, list[int]]]:
    return [(meta.name, list(range(meta.partitions)))
            for meta in sorted(ctx.broker.metadata.topics(), key=lambda t: t.name)]


def _refused(requested: list[tuple[str, list[int]]], error: KafkaError) -> dict[str, Any]:
    """The whole request refused: the error at the top (v1+) and on every partition named (as Kafka does)."""
    return {"throttle_time_ms": 0, "error_code": int(error.code),
            "replica_election_results": [
                {"topic": topic, "partition_result": [{"partition_id": index, "error_code": int(error.code),
                                                       "error_message": error.message} for index in indexes]}
                for topic, indexes in requested]}


@handles(43, "ElectLeaders", 0, 2)
async def handle_elect_leaders(ctx: RequestContext, request: Any) -> dict[str, Any]:
    every = request.topic_partitions is None
    requested = [] if every else [(t.topic, list(t.partitions)) for t in request.topic_partitions]
    try:
        election = _election_type(ctx, request)
        ctx.require_cluster(AclOperation.ALTER)
        if ctx.broker.clustered:
            ctx.broker.require_controller()
    except KafkaError as exc:
        return _refused(requested, exc)
    results = []
    for topic, indexes in _every_partition(ctx) if every else requested:
        partitions = []
        for index in indexes:
            code, message = int(ErrorCode.NONE), None
            try:
                await _elect(ctx, election, topic, index)
            except KafkaError as exc:
                code, message = int(exc.code), exc.message
            if every and code == ErrorCode.ELECTION_NOT_NEEDED:
                continue
            partitions.append({"partition_id": index, "error_code": code, "error_message": message})
        results.append({"topic": topic, "partition_result": partitions})
    return {"throttle_time_ms": 0, "error_code": 0, "replica_election_results": results}
