"""The hand-written Fetch response encoder equals the schema codec, byte for byte, at every version."""

from __future__ import annotations

import os
import uuid

import pytest

from umbra.protocol.codec import build_response, encode_response
from umbra.protocol.fetch_codec import FetchPartitionData, FetchTopicData, encode_fetch_response

TOPIC_ID = uuid.UUID("12345678-1234-5678-1234-567812345678")


def _topics() -> list[FetchTopicData]:
    return [
        FetchTopicData("orders", TOPIC_ID, [
            FetchPartitionData(0, 0, 100, 100, 3, b"\x01" * 70),
            FetchPartitionData(2, 1, -1, -1, -1, b""),
            FetchPartitionData(3, 0, 60, 60, 0, b"", diverging_epoch=(4, 50)),  # a tagged field from v12
        ]),
        FetchTopicData("empty", uuid.UUID(int=7), []),
        FetchTopicData("x" * 300, uuid.UUID(int=9), [FetchPartitionData(5, 0, 9, 9, 0, memoryview(b"\x02" * 200))]),
    ]


@pytest.mark.parametrize("version", range(4, 18))
def test_matches_schema_codec(version: int) -> None:
    topics = _topics()
    expected_fields = {
        "throttle_time_ms": 5, "error_code": 0, "session_id": 77,
        "responses": [{"topic": t.name, "topic_id": t.topic_id, "partitions": [
            {"partition_index": p.partition_index, "error_code": p.error_code, "high_watermark": p.high_watermark,
             "last_stable_offset": p.last_stable_offset, "log_start_offset": p.log_start_offset,
             "aborted_transactions": None, "preferred_read_replica": -1, "records": bytes(p.records),
             **({"diverging_epoch": {"epoch": p.diverging_epoch[0], "end_offset": p.diverging_epoch[1]}}
                if p.diverging_epoch and version >= 12 else {})}
            for p in t.partitions]} for t in topics],
    }
    expected = encode_response(1, version, 42, build_response(1, version, expected_fields))
    pieces = encode_fetch_response(version, 42, 5, 0, 77, topics)
    assert b"".join(bytes(p) for p in pieces) == expected


def test_record_sets_are_not_copied() -> None:
    records = memoryview(b"\x03" * 1000)
    pieces = encode_fetch_response(12, 1, 0, 0, 0, [FetchTopicData("t", TOPIC_ID, [
        FetchPartitionData(0, 0, 1, 1, 0, records)])])
    assert any(piece is records for piece in pieces)


@pytest.mark.parametrize("version", [4, 11, 12, 13, 16, 17])
def test_file_regions_and_record_set_parts(version: int, tmp_path) -> None:
    from umbra.storage.region import FileRegion

    content = bytes(range(256)) * 40
    path = tmp_path / "segment"
    path.write_bytes(content)
    fd = os.open(path, os.O_RDONLY)
    regions = [FileRegion(fd, 100, 5000), FileRegion(fd, 7000, 3000), FileRegion(fd, 0, 10)]
    os.close(fd)  # the regions own duplicates
    try:
        topics = [FetchTopicData("orders", TOPIC_ID, [
            FetchPartitionData(0, 0, 100, 100, 3, regions[0]),
            FetchPartitionData(1, 0, 100, 100, 3, [b"\x05" * 30, regions[1], memoryview(b""), regions[2]]),
            FetchPartitionData(2, 0, 9, 9, 0, b"\x06" * 12),
        ])]
        expected_fields = {
            "throttle_time_ms": 0, "error_code": 0, "session_id": 0,
            "responses": [{"topic": "orders", "topic_id": TOPIC_ID, "partitions": [
                {"partition_index": i, "error_code": 0, "high_watermark": hw, "last_stable_offset": hw,
                 "log_start_offset": start, "aborted_transactions": None, "preferred_read_replica": -1,
                 "records": records}
                for i, hw, start, records in [
                    (0, 100, 3, content[100:5100]),
                    (1, 100, 3, b"\x05" * 30 + content[7000:10000] + content[:10]),
                    (2, 9, 0, b"\x06" * 12)]]}],
        }
        expected = encode_response(1, version, 9, build_response(1, version, expected_fields))
        pieces = encode_fetch_response(version, 9, 0, 0, 0, topics)
        assert sum(isinstance(p, FileRegion) for p in pieces) == 3  # passed through, not read
        assert b"".join(p.read() if isinstance(p, FileRegion) else bytes(p) for p in pieces) == expected
    finally:
        for region in regions:
            region.close()
