"""ConsumerGroupHeartbeat (68) and ConsumerGroupDescribe (69), built from Kafka's JSON definitions: round trips
of every version, and what ApiVersions-style lookups see."""

from __future__ import annotations

import uuid

import pytest

from umbra.protocol.codec import SCHEMAS, build_request, build_response, decode_request

TOPIC_ID = uuid.UUID("12345678-1234-5678-1234-567812345678")


def frame(request: object, correlation_id: int = 7) -> bytes:
    request.with_header(correlation_id=correlation_id, client_id="test")  # type: ignore[attr-defined]
    return bytes(request.encode(header=True))  # type: ignore[attr-defined]


def test_registered_with_kafka_4_versions() -> None:
    assert (SCHEMAS[68].name, SCHEMAS[68].request.max_version, SCHEMAS[68].is_flexible(0)) == (
        "ConsumerGroupHeartbeat", 1, True)
    assert (SCHEMAS[69].name, SCHEMAS[69].request.max_version) == ("ConsumerGroupDescribe", 1)


@pytest.mark.parametrize("version", [0, 1])
def test_heartbeat_request_round_trip(version: int) -> None:
    fields = {"group_id": "g", "member_id": "m-1", "member_epoch": 3, "instance_id": "i", "rack_id": None,
              "rebalance_timeout_ms": 30000, "subscribed_topic_names": ["a", "b"], "server_assignor": "range",
              "topic_partitions": [{"topic_id": TOPIC_ID, "partitions": [0, 2]}]}
    if version >= 1:
        fields["subscribed_topic_regex"] = "orders-.*"
    header, body = decode_request(frame(build_request(68, version, fields)))
    assert (header.api_key, header.api_version, header.correlation_id) == (68, version, 7)
    assert (body.group_id, body.member_id, body.member_epoch, body.instance_id) == ("g", "m-1", 3, "i")
    assert body.subscribed_topic_names == ["a", "b"] and body.server_assignor == "range"
    assert [(tp.topic_id, tp.partitions) for tp in body.topic_partitions] == [(TOPIC_ID, [0, 2])]
    assert body.subscribed_topic_regex == ("orders-.*" if version >= 1 else None)


def test_heartbeat_request_nulls_mean_unchanged() -> None:
    _, body = decode_request(frame(build_request(68, 1, {"group_id": "g", "member_id": "m", "member_epoch": 5})))
    assert body.subscribed_topic_names is None and body.topic_partitions is None and body.rebalance_timeout_ms == -1


@pytest.mark.parametrize("version", [0, 1])
def test_heartbeat_response_round_trip(version: int) -> None:
    response = build_response(68, version, {"error_code": 0, "member_id": "m", "member_epoch": 4,
                                            "heartbeat_interval_ms": 500, "assignment": {"topic_partitions": [
                                                {"topic_id": TOPIC_ID, "partitions": [1]}]}})
    decoded = SCHEMAS[68].response.decode(response.encode(version=version), version=version)
    assert (decoded.member_id, decoded.member_epoch, decoded.heartbeat_interval_ms) == ("m", 4, 500)
    assert [(tp.topic_id, tp.partitions) for tp in decoded.assignment.topic_partitions] == [(TOPIC_ID, [1])]
    empty = build_response(68, version, {"error_code": 16, "error_message": "no", "member_epoch": 0,
                                         "heartbeat_interval_ms": 0})
    decoded = SCHEMAS[68].response.decode(empty.encode(version=version), version=version)
    assert decoded.assignment is None and decoded.error_message == "no" and decoded.member_id is None


@pytest.mark.parametrize("version", [0, 1])
def test_describe_round_trip(version: int) -> None:
    _, body = decode_request(frame(build_request(69, version, {"group_ids": ["g", "h"],
                                                              "include_authorized_operations": True})))
    assert body.group_ids == ["g", "h"] and body.include_authorized_operations is True
    assignment = {"topic_partitions": [{"topic_id": TOPIC_ID, "topic_name": "t", "partitions": [0, 1]}]}
    member = {"member_id": "m", "instance_id": None, "rack_id": None, "member_epoch": 2, "client_id": "c",
              "client_host": "/127.0.0.1", "subscribed_topic_names": ["t"], "subscribed_topic_regex": None,
              "assignment": assignment, "target_assignment": assignment}
    if version >= 1:
        member["member_type"] = 1
    response = build_response(69, version, {"groups": [{"error_code": 0, "group_id": "g", "group_state": "Stable",
                                                        "group_epoch": 2, "assignment_epoch": 2,
                                                        "assignor_name": "uniform", "members": [member],
                                                        "authorized_operations": 3}]})
    group = SCHEMAS[69].response.decode(response.encode(version=version), version=version).groups[0]
    assert (group.group_state, group.group_epoch, group.assignor_name, group.authorized_operations) == (
        "Stable", 2, "uniform", 3)
    described = group.members[0]
    assert described.target_assignment.topic_partitions[0].topic_name == "t"
    assert described.assignment.topic_partitions[0].partitions == [0, 1]
    if version >= 1:
        assert described.member_type == 1
