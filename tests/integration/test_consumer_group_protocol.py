"""The consumer group protocol's wire APIs (KIP-848) on a real broker, with raw requests: ConsumerGroupHeartbeat
(topic ids, errors), ConsumerGroupDescribe, and how the older group APIs see such a group (DescribeGroups,
ListGroups with its type filter, OffsetCommit/OffsetFetch checking the member epoch, OffsetDelete, DeleteGroups).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import BrokerProcess, create_topic
from rawclient import RawConnection

from umbra.errors import ErrorCode
from umbra.protocol.codec import build_request

FENCED_MEMBER_EPOCH, UNSUPPORTED_ASSIGNOR, STALE_MEMBER_EPOCH = 110, 112, 113
TOPIC = "wire-orders"
BROKER_CONFIG = {"group_initial_rebalance_delay_ms": 0, "group_consumer_heartbeat_interval_ms": 400}
_ids = itertools.count(1)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    process = BrokerProcess(Path(tmp_path_factory.mktemp("kip848-wire")), name="broker", config=BROKER_CONFIG)
    process.start()
    try:
        create_topic(process.bootstrap, TOPIC, partitions=2)
        yield process
    finally:
        process.stop()


@pytest.fixture
def conn(broker: BrokerProcess) -> Iterator[RawConnection]:
    with RawConnection(broker.host, broker.port or 0) as connection:
        yield connection


def call(conn: RawConnection, api_key: int, version: int, fields: dict[str, Any]) -> Any:
    request = build_request(api_key, version, fields)
    request.with_header(correlation_id=next(_ids), client_id="raw-test")
    conn.sock.sendall(bytes(request.encode(header=True, framed=True)))
    return conn.receive(api_key, version)[1]


def topic_id(conn: RawConnection) -> Any:
    metadata = call(conn, 3, 12, {"topics": [{"name": TOPIC}], "allow_auto_topic_creation": False})
    return metadata.topics[0].topic_id


def heartbeat(conn: RawConnection, group: str, member_id: str, epoch: int, **fields: Any) -> Any:
    base: dict[str, Any] = {"group_id": group, "member_id": member_id, "member_epoch": epoch}
    if epoch == 0:
        base.update(rebalance_timeout_ms=10000, subscribed_topic_names=[TOPIC], topic_partitions=[])
    return call(conn, 68, 1, {**base, **fields})


def commit(conn: RawConnection, group: str, member_id: str, epoch: int, version: int = 9) -> int:
    response = call(conn, 8, version, {"group_id": group, "generation_id_or_member_epoch": epoch,
                                       "member_id": member_id, "group_instance_id": None, "topics": [
                                           {"name": TOPIC, "partitions": [{"partition_index": 0,
                                                                           "committed_offset": 5,
                                                                           "committed_leader_epoch": -1,
                                                                           "committed_metadata": ""}]}]})
    return int(response.topics[0].partitions[0].error_code)


def test_join_describe_commit_and_leave(conn: RawConnection) -> None:
    group = "wire-group"
    joined = heartbeat(conn, group, "member-1", 0)
    assert (joined.error_code, joined.member_id, joined.member_epoch, joined.heartbeat_interval_ms) == (
        0, "member-1", 1, 400)
    assert [(tp.topic_id, sorted(tp.partitions)) for tp in joined.assignment.topic_partitions] == [
        (topic_id(conn), [0, 1])]

    described = call(conn, 69, 1, {"group_ids": [group, "no-such-group"], "include_authorized_operations": True})
    found, missing = described.groups
    assert (found.error_code, found.group_state, found.group_epoch, found.assignment_epoch, found.assignor_name) == (
        0, "Stable", 1, 1, "uniform")
    member = found.members[0]
    assert (member.member_id, member.member_epoch, member.subscribed_topic_names, member.member_type) == (
        "member-1", 1, [TOPIC], 1)
    assert member.assignment.topic_partitions[0].topic_name == TOPIC
    assert found.authorized_operations > 0  # every group operation while authorization is off
    assert missing.error_code == ErrorCode.GROUP_ID_NOT_FOUND

    # DescribeGroups answers as Kafka 4 does for a group of the other protocol; ListGroups shows its type.
    classic_view = call(conn, 15, 6, {"groups": [group], "include_authorized_operations": False}).groups[0]
    assert (classic_view.error_code, classic_view.group_state) == (ErrorCode.GROUP_ID_NOT_FOUND, "Dead")
    listed = call(conn, 16, 5, {"states_filter": [], "types_filter": ["consumer"]}).groups
    assert [(g.group_id, g.group_type, g.group_state, g.protocol_type) for g in listed
            if g.group_id == group] == [(group, "consumer", "Stable", "consumer")]
    assert group not in {g.group_id for g in call(conn, 16, 5, {"states_filter": [],
                                                                 "types_filter": ["classic"]}).groups}

    # Commits carry the member epoch.
    assert commit(conn, group, "member-1", 1) == 0
    assert commit(conn, group, "member-1", 0) == STALE_MEMBER_EPOCH
    assert commit(conn, group, "member-1", 2) == FENCED_MEMBER_EPOCH
    assert commit(conn, group, "stranger", 1) == ErrorCode.UNKNOWN_MEMBER_ID
    fetched = call(conn, 9, 9, {"groups": [{"group_id": group, "member_id": "member-1", "member_epoch": 0,
                                            "topics": None}], "require_stable": False}).groups[0]
    assert fetched.error_code == STALE_MEMBER_EPOCH
    fetched = call(conn, 9, 9, {"groups": [{"group_id": group, "member_id": None, "member_epoch": -1,
                                            "topics": None}], "require_stable": False}).groups[0]
    assert fetched.error_code == 0 and fetched.topics[0].partitions[0].committed_offset == 5

    assert call(conn, 42, 2, {"groups_names": [group]}).results[0].error_code == ErrorCode.NON_EMPTY_GROUP
    left = heartbeat(conn, group, "member-1", -1)
    assert (left.error_code, left.member_epoch) == (0, -1)
    deleted_offsets = call(conn, 47, 0, {"group_id": group, "topics": [{"name": TOPIC, "partitions": [
        {"partition_index": 0}]}]})
    assert deleted_offsets.error_code == 0 and deleted_offsets.topics[0].partitions[0].error_code == 0
    assert call(conn, 42, 2, {"groups_names": [group]}).results[0].error_code == 0


def test_heartbeat_errors(conn: RawConnection) -> None:
    group = "wire-errors"
    assert heartbeat(conn, group, "m", 0, server_assignor="sticky").error_code == UNSUPPORTED_ASSIGNOR
    assert heartbeat(conn, group, "", 0).error_code == ErrorCode.INVALID_REQUEST
    assert heartbeat(conn, group, "m", 3).error_code == ErrorCode.UNKNOWN_MEMBER_ID
    assert heartbeat(conn, group, "m", 0).member_epoch == 1
    fenced = heartbeat(conn, group, "m", 5)
    assert fenced.error_code == FENCED_MEMBER_EPOCH and fenced.error_message
    # A classic member cannot join while the consumer group has members.
    classic = call(conn, 11, 5, {"group_id": group, "session_timeout_ms": 10000, "rebalance_timeout_ms": 10000,
                                 "member_id": "", "group_instance_id": None, "protocol_type": "consumer",
                                 "protocols": [{"name": "range", "metadata": b""}]})
    assert classic.error_code == ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    assert heartbeat(conn, group, "m", -1).error_code == 0


def test_an_empty_classic_group_becomes_a_consumer_group(conn: RawConnection) -> None:
    group = "wire-upgrade"
    assert commit(conn, group, "", -1, version=8) == 0  # a classic (offsets-only) group
    joined = heartbeat(conn, group, "m", 0)
    assert joined.error_code == 0 and joined.member_epoch >= 1
    described = call(conn, 69, 0, {"group_ids": [group], "include_authorized_operations": False}).groups[0]
    assert described.error_code == 0 and described.members[0].member_id == "m"
    assert heartbeat(conn, group, "m", -1).error_code == 0


def test_the_group_config_sets_its_heartbeat_interval(conn: RawConnection) -> None:
    group = "wire-configured"
    altered = call(conn, 44, 1, {"resources": [{"resource_type": 32, "resource_name": group, "configs": [
        {"name": "consumer.heartbeat.interval.ms", "config_operation": 0, "value": "6000"}]}],
        "validate_only": False})
    assert altered.responses[0].error_code == 0, altered
    joined = heartbeat(conn, group, "m", 0)
    assert (joined.error_code, joined.heartbeat_interval_ms) == (0, 6000)
    assert heartbeat(conn, group, "m", -1).error_code == 0


def test_describe_groups_reports_authorized_operations_when_asked(conn: RawConnection) -> None:
    group = "wire-classic-described"
    assert commit(conn, group, "", -1, version=8) == 0  # an (empty) classic group
    asked = call(conn, 15, 5, {"groups": [group], "include_authorized_operations": True}).groups[0]
    # Every GROUP operation (KIP-430 bits: READ 3, DESCRIBE 8, DELETE 6, DESCRIBE_CONFIGS 10, ALTER_CONFIGS 11)
    # while authorization is off.
    assert asked.error_code == 0 and set(asked.authorized_operations) == {3, 6, 8, 10, 11}
    not_asked = call(conn, 15, 5, {"groups": [group], "include_authorized_operations": False}).groups[0]
    assert not not_asked.authorized_operations
