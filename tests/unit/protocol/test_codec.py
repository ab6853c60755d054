"""The request decoder and framing: any bytes give a request or the codec's own error, never anything else."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka.protocol.consumer import FetchRequest
from kafka.protocol.metadata import ApiVersionsRequest, MetadataRequest
from kafka.protocol.producer import ProduceRequest

from umbra.protocol.codec import (
    ProtocolDecodeError,
    build_response,
    decode_request,
    encode_response,
    response_header_bytes,
)
from umbra.protocol.framing import FrameDecoder, FrameTooLarge


def _request_bytes(request, correlation_id: int = 5) -> bytes:
    request.with_header(correlation_id=correlation_id, client_id="test")
    return bytes(request.encode(header=True))


def test_decodes_flexible_request_with_header_tags() -> None:
    frame = _request_bytes(MetadataRequest[12](topics=None, allow_auto_topic_creation=False,
                                               include_topic_authorized_operations=False))
    header, body = decode_request(frame)
    assert (header.api_key, header.api_version, header.correlation_id, header.client_id) == (3, 12, 5, "test")
    assert body.topics is None and body.allow_auto_topic_creation is False


def test_produce_records_stay_bytes() -> None:
    req = ProduceRequest[9](transactional_id=None, acks=-1, timeout_ms=1000, topic_data=[
        ProduceRequest.TopicProduceData(name="t", partition_data=[
            ProduceRequest.TopicProduceData.PartitionProduceData(index=0, records=b"\x01\x02")])])
    _, body = decode_request(_request_bytes(req))
    assert bytes(body.topic_data[0].partition_data[0].records) == b"\x01\x02"


def test_unknown_tagged_fields_are_skipped() -> None:
    frame = bytearray(_request_bytes(ApiVersionsRequest[3](client_software_name="c", client_software_version="1")))
    # Header v2 ends with an empty tag buffer right after the client id: give it one unknown tag.
    header_end = 2 + 2 + 4 + 2 + len("test")
    assert frame[header_end] == 0
    frame[header_end:header_end + 1] = bytes([1, 99, 3]) + b"abc"
    header, body = decode_request(bytes(frame))
    assert header.correlation_id == 5 and body.client_software_name == "c"


@pytest.mark.parametrize("frame", [b"", b"\x00", b"\x00\x03\x00\x0c\x00\x00", b"\xff" * 7])
def test_short_frames_raise_codec_error(frame: bytes) -> None:
    with pytest.raises(ProtocolDecodeError):
        decode_request(frame)


def test_unknown_api_key_keeps_header() -> None:
    frame = struct.pack(">hhih", 999, 0, 42, -1)
    with pytest.raises(ProtocolDecodeError) as info:
        decode_request(frame)
    assert info.value.header is not None and info.value.header.correlation_id == 42


def test_truncated_body_raises_codec_error() -> None:
    frame = _request_bytes(FetchRequest[12](replica_id=-1, max_wait_ms=1, min_bytes=1, max_bytes=1, isolation_level=0,
                                            session_id=0, session_epoch=-1, topics=[], forgotten_topics_data=[],
                                            rack_id=""))
    with pytest.raises(ProtocolDecodeError):
        decode_request(frame[:-3])


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_any_bytes_decode_or_raise_codec_error(data: bytes) -> None:
    try:
        decode_request(data)
    except ProtocolDecodeError:
        pass


_known_headers = st.tuples(st.sampled_from([0, 1, 2, 3, 8, 9, 10, 11, 12, 18, 19, 32, 60]), st.integers(0, 13),
                           st.integers(-(2**31), 2**31 - 1))


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_known_headers, st.binary(max_size=200))
def test_valid_headers_with_random_bodies(header: tuple[int, int, int], body: bytes) -> None:
    api_key, version, correlation_id = header
    frame = struct.pack(">hhih", api_key, version, correlation_id, 1) + b"x" + body
    try:
        decode_request(frame)
    except ProtocolDecodeError:
        pass


def test_framing_splits_and_joins() -> None:
    decoder = FrameDecoder(100)
    payloads = [b"abc", b"", b"x" * 50]
    stream = b"".join(struct.pack(">i", len(p)) + p for p in payloads)
    frames = []
    for i in range(len(stream)):
        frames += decoder.feed(stream[i:i + 1])
    assert frames == payloads and decoder.buffered == 0


@pytest.mark.parametrize("size", [101, -1, 2**31 - 1])
def test_framing_refuses_bad_sizes(size: int) -> None:
    with pytest.raises(FrameTooLarge):
        FrameDecoder(100).feed(struct.pack(">i", size))


def test_api_versions_response_header_is_never_flexible() -> None:
    assert response_header_bytes(18, 3, 7) == struct.pack(">i", 7)
    assert response_header_bytes(3, 12, 7) == struct.pack(">ib", 7, 0)
    assert response_header_bytes(3, 8, 7) == struct.pack(">i", 7)


def test_encoded_response_round_trips_through_client_codec() -> None:
    from kafka.protocol.metadata import MetadataResponse

    response = build_response(3, 12, {"brokers": [{"node_id": 1, "host": "h", "port": 9, "rack": None}],
                                      "cluster_id": "c", "controller_id": 1, "topics": []})
    framed = encode_response(3, 12, 77, response)
    assert struct.unpack_from(">i", framed)[0] == len(framed) - 4
    decoded = MetadataResponse.decode(framed[4:], version=12, header=True)
    assert decoded.header.correlation_id == 77 and decoded.brokers[0].port == 9


@settings(max_examples=300, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=3000), max_size=12),
    cuts=st.lists(st.integers(min_value=1, max_value=5000), min_size=1, max_size=20),
)
def test_framing_any_frames_any_reads(sizes: list[int], cuts: list[int]) -> None:
    """Frames small and large (received in place), split by reads of any sizes, come out whole and in order."""
    decoder = FrameDecoder(4000, staging_size=1024, direct_threshold=256)
    payloads = [bytes((i + j) & 0xFF for j in range(size)) for i, size in enumerate(sizes)]
    stream = memoryview(b"".join(struct.pack(">i", len(p)) + p for p in payloads))
    frames: list[bytearray] = []
    cut = 0
    while len(stream):
        target = decoder.get_buffer()
        assert len(target) > 0
        n = min(len(target), len(stream), cuts[cut % len(cuts)])
        cut += 1
        target[:n] = stream[:n]
        stream = stream[n:]
        frames += decoder.buffer_updated(n)
    assert frames == payloads
    assert decoder.buffered == 0
