"""Property-based fuzzing of the decoders that read bytes from elsewhere: a record batch (a source's or a
client's), and a source's Fetch response. Whatever the bytes, each returns a value or raises its own error."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from umbra.client.errors import ClientProtocolError
from umbra.client.fetch_response import decode_fetch_response
from umbra.client.messages import response_header_size
from umbra.errors import KafkaError
from umbra.protocol.codec import build_response, encode_response
from umbra.records import compression
from umbra.records.records import build_batch, decode_batch

_BATCHES = [build_batch([(b"key-%d" % i, b"value %d" % i * (i + 1), [("h", b"x"), ("e", b"")], 1_000 + i)
                         for i in range(4)], compression=codec) for codec in sorted(compression.CODEC_NAMES)]


def _mutated(original: bytes, data: st.DataObject) -> bytes:
    """A few bytes changed, then cut somewhere and maybe followed by junk."""
    mutated = bytearray(original)
    for _ in range(data.draw(st.integers(1, 4))):
        mutated[data.draw(st.integers(0, len(mutated) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(mutated)))
    return bytes(mutated[:cut]) + data.draw(st.binary(max_size=16))


def _decode(data: bytes) -> None:
    try:
        header, records = decode_batch(data, max_decompressed=1 << 20)
    except KafkaError:  # CorruptMessage, UnsupportedCompressionType
        return
    assert len(records) == header.record_count


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=400))
def test_decode_batch_on_arbitrary_bytes(data: bytes) -> None:
    _decode(data)


@settings(max_examples=800, deadline=None)
@given(st.integers(0, len(_BATCHES) - 1), st.data())
def test_decode_batch_on_mutated_batches(which: int, data: st.DataObject) -> None:
    _decode(_mutated(_BATCHES[which], data))


def _fetch_response(version: int) -> bytes:
    fields = {"throttle_time_ms": 0, "error_code": 0, "session_id": 5, "responses": [
        {"topic": "t", "topic_id": None, "partitions": [
            {"partition_index": p, "error_code": 0, "high_watermark": 100, "last_stable_offset": 100,
             "log_start_offset": 0, "aborted_transactions": None, "preferred_read_replica": -1,
             "records": _BATCHES[p % len(_BATCHES)]} for p in range(3)]}]}
    frame = bytes(encode_response(1, version, 9, build_response(1, version, fields)))[4:]
    return frame[response_header_size(1, version, frame):]


_RESPONSES = {version: _fetch_response(version) for version in range(4, 19)}


def _decode_fetch(body: bytes, version: int) -> None:
    try:
        response = decode_fetch_response(body, version)
    except ClientProtocolError:
        return
    for partition in response.partitions:
        assert 0 <= len(partition.records) <= len(body)


@settings(max_examples=400, deadline=None)
@given(st.integers(4, 18), st.binary(max_size=300))
def test_fetch_response_decoder_on_arbitrary_bytes(version: int, body: bytes) -> None:
    _decode_fetch(body, version)


@settings(max_examples=800, deadline=None)
@given(st.integers(4, 18), st.data())
def test_fetch_response_decoder_on_mutated_responses(version: int, data: st.DataObject) -> None:
    _decode_fetch(_mutated(_RESPONSES[version], data), version)
