"""The hand-written Fetch response decoder against kafka-python's encoder and decoder, field by field."""

from __future__ import annotations

import struct
import uuid
from typing import Any

import pytest

from umbra.client.errors import ClientProtocolError
from umbra.client.fetch_response import decode_fetch_response
from umbra.client.messages import response_header_size
from umbra.protocol.codec import SCHEMAS, build_response, encode_response

TOPIC_A = uuid.UUID("11111111-2222-3333-4444-555555555555")
TOPIC_B = uuid.UUID("66666666-7777-8888-9999-000000000000")


def records(seed: int, size: int) -> bytes:
    return bytes((seed + i) % 251 for i in range(size))


def partition(index: int, data: bytes | None, **extra: Any) -> dict[str, Any]:
    return {"partition_index": index, "error_code": extra.pop("error_code", 0), "high_watermark": 1000 + index,
            "last_stable_offset": 900 + index, "log_start_offset": 10 + index,
            "aborted_transactions": extra.pop("aborted_transactions", None), "preferred_read_replica": -1,
            "records": data, **extra}


def response_fields(version: int) -> dict[str, Any]:
    flexible = version >= 12
    tagged: dict[str, Any] = {}
    if flexible:
        tagged = {"current_leader": {"leader_id": 3, "leader_epoch": 17},
                  "diverging_epoch": {"epoch": 4, "end_offset": 123}}
    fields: dict[str, Any] = {"throttle_time_ms": 5, "error_code": 0, "session_id": 77, "responses": [
        {"topic": "alpha", "topic_id": TOPIC_A, "partitions": [
            partition(0, records(1, 3000)),
            partition(1, None, error_code=1),
            partition(2, b"", aborted_transactions=[{"producer_id": 9, "first_offset": 44},
                                                    {"producer_id": 10, "first_offset": 45}]),
            partition(3, records(7, 70000), **tagged),
        ]},
        {"topic": "beta", "topic_id": TOPIC_B, "partitions": [partition(0, records(3, 129))]},
    ]}
    if version >= 16:
        fields["node_endpoints"] = [{"node_id": 3, "host": "broker-3.example", "port": 9093, "rack": "r1"},
                                    {"node_id": 4, "host": "b4", "port": 9094, "rack": None}]
    return fields


def encode(version: int, fields: dict[str, Any]) -> bytes:
    body = build_response(1, version, fields)
    return bytes(encode_response(1, version, 42, body))[4:]  # without the size prefix


@pytest.mark.parametrize("version", range(4, 19))
def test_decoder_matches_kafka_python(version: int) -> None:
    frame = encode(version, response_fields(version))
    expected = SCHEMAS[1].response.decode(frame, version=version, header=True)
    view = memoryview(frame)
    got = decode_fetch_response(view[response_header_size(1, version, view):], version)

    assert got.throttle_time_ms == expected.throttle_time_ms
    assert (got.error_code, got.session_id) == ((expected.error_code, expected.session_id) if version >= 7 else (0, 0))
    flat = [(t, p) for t in expected.responses for p in t.partitions]
    assert len(got.partitions) == len(flat)
    for mine, (topic, theirs) in zip(got.partitions, flat, strict=True):
        if version >= 13:
            assert (mine.topic, mine.topic_id) == (None, topic.topic_id)
        else:
            assert (mine.topic, mine.topic_id) == (topic.topic, None)
        assert mine.partition == theirs.partition_index
        assert mine.error_code == theirs.error_code
        assert mine.high_watermark == theirs.high_watermark
        assert mine.last_stable_offset == theirs.last_stable_offset
        assert mine.log_start_offset == (theirs.log_start_offset if version >= 5 else -1)
        assert bytes(mine.records) == (theirs.records or b"")
        assert isinstance(mine.records, memoryview)
        expected_aborted = theirs.aborted_transactions
        if expected_aborted is None:
            assert mine.aborted_transactions is None
        else:
            assert mine.aborted_transactions == [(a.producer_id, a.first_offset) for a in expected_aborted]
        assert mine.preferred_read_replica == (theirs.preferred_read_replica if version >= 11 else -1)
        if version >= 12 and theirs.current_leader is not None and theirs.current_leader.leader_id >= 0:
            assert mine.current_leader == (theirs.current_leader.leader_id, theirs.current_leader.leader_epoch)
            assert mine.diverging_epoch == (theirs.diverging_epoch.epoch, theirs.diverging_epoch.end_offset)
    if version >= 16:
        assert got.node_endpoints == {n.node_id: (n.host, n.port, n.rack) for n in expected.node_endpoints}
    # The tagged fields were really on the wire in flexible versions.
    if version >= 12:
        assert got.partitions[3].current_leader == (3, 17)


def test_records_are_views_into_the_frame_not_copies() -> None:
    frame = bytearray(encode(16, response_fields(16)))
    view = memoryview(frame)
    got = decode_fetch_response(view[response_header_size(1, 16, view):], 16)
    records = got.partitions[0].records
    assert records.obj is frame
    first = records[0]
    frame[frame.index(bytes(records[:16]))] ^= 0xFF  # change the frame: the view sees it
    assert records[0] == first ^ 0xFF


@pytest.mark.parametrize("version", [4, 11, 12, 16])
def test_every_truncation_raises_protocol_error(version: int) -> None:
    fields = {"throttle_time_ms": 0, "error_code": 0, "session_id": 1, "responses": [
        {"topic": "t", "topic_id": TOPIC_A, "partitions": [partition(0, records(0, 40))]}]}
    frame = encode(version, fields)
    body = frame[response_header_size(1, version, frame):]
    for cut in range(len(body)):
        with pytest.raises(ClientProtocolError):
            decode_fetch_response(body[:cut], version)
    with pytest.raises(ClientProtocolError, match="unexpected bytes"):
        decode_fetch_response(body + b"\x00", version)


def test_unknown_tagged_fields_are_skipped() -> None:
    fields = {"throttle_time_ms": 0, "error_code": 0, "session_id": 1, "responses": [
        {"topic": "t", "topic_id": TOPIC_A, "partitions": [partition(0, b"abc")]}]}
    frame = encode(12, fields)
    body = bytearray(frame[response_header_size(1, 12, frame):])
    # Replace the final (top-level) empty tag buffer with one unknown tag 9 carrying 3 bytes.
    assert body[-1] == 0
    body[-1:] = bytes([1, 9, 3, 1, 2, 3])
    got = decode_fetch_response(bytes(body), 12)
    assert bytes(got.partitions[0].records) == b"abc"


def test_unsupported_version_is_refused() -> None:
    with pytest.raises(ClientProtocolError):
        decode_fetch_response(struct.pack(">i", 0), 3)
