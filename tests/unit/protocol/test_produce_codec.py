"""The hand-written Produce request decoder agrees with the schema codec, and hands out views, not copies."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.protocol.producer import ProduceRequest

from umbra.protocol.codec import ProtocolDecodeError, decode_request
from umbra.protocol.produce_codec import ProduceDecodeError, decode_produce_request


def _request(version: int, transactional_id: str | None = None) -> ProduceRequest:
    topic = ProduceRequest.TopicProduceData
    partition = topic.PartitionProduceData
    return ProduceRequest[version](transactional_id=transactional_id, acks=-1, timeout_ms=1500, topic_data=[
        topic(name="orders", partition_data=[partition(index=0, records=b"\x01" * 100),
                                             partition(index=7, records=None)]),
        topic(name="é-topic", partition_data=[]),
        topic(name="x" * 200, partition_data=[partition(index=2, records=b"")]),
    ])


@pytest.mark.parametrize("version", range(3, 12))
@pytest.mark.parametrize("transactional_id", [None, "txn-1"])
def test_matches_schema_codec(version: int, transactional_id: str | None) -> None:
    body = bytes(_request(version, transactional_id).encode(version=version))
    expected = ProduceRequest.decode(body, version=version)
    got = decode_produce_request(bytearray(body), 0, version)
    assert (got.transactional_id, got.acks, got.timeout_ms) == (expected.transactional_id, expected.acks,
                                                                 expected.timeout_ms)
    assert [(t.name, [(p.index, None if p.records is None else bytes(p.records)) for p in t.partition_data])
            for t in got.topic_data] == [
        (t.name, [(p.index, p.records) for p in t.partition_data]) for t in expected.topic_data]


def test_records_are_writable_views_of_the_frame() -> None:
    request = _request(9)
    request.with_header(correlation_id=1, client_id="c")
    frame = bytearray(request.encode(header=True))
    _, body = decode_request(frame)
    records = body.topic_data[0].partition_data[0].records
    assert isinstance(records, memoryview) and not records.readonly
    records[0] = 0x7F  # stamping in place writes into the frame itself
    assert 0x7F in frame


@pytest.mark.parametrize("cut", [1, 5, 20])
def test_truncated_requests_are_refused(cut: int) -> None:
    body = bytes(_request(9).encode(version=9))
    with pytest.raises(ProduceDecodeError):
        decode_produce_request(body[:-cut], 0, 9)


@settings(max_examples=2000, deadline=None)
@given(st.integers(3, 11), st.binary(max_size=200))
def test_any_bytes_decode_or_raise_its_error(version: int, data: bytes) -> None:
    try:
        decode_produce_request(data, 0, version)
    except ProduceDecodeError:
        pass


def test_decode_request_maps_errors_to_protocol_errors() -> None:
    request = _request(9)
    request.with_header(correlation_id=1, client_id="c")
    frame = bytes(request.encode(header=True))
    with pytest.raises(ProtocolDecodeError):
        decode_request(frame[:-4])
