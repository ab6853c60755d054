"""Fidelity: a shadow partition is its source partition, byte for byte (leader epoch aside), offsets included.

The source gets three topics (1, 3 and 8 partitions) written by idempotent confluent-kafka producers with
every compression codec, keys (some null), values (some null, some large), headers and explicit
timestamps; the 1-partition topic uses LogAppendTime, so its timestamps are the source broker's.
DeleteRecords moves some log start offsets above 0: at a batch boundary, in the middle of a batch and
at the high watermark (an empty partition), both before the link exists (a new shadow partition adopts
the source's start) and while it runs (the shadow follows the source's start). After the link catches
up, and again after the shadow broker restarts, for every partition:

- the shadow's log start offset and high watermark (ListOffsets and Fetch) equal the source's;
- the batches served by Fetch v12 from the log start to the high watermark are the same bytes, with only
  the partition leader epoch (bytes 12..16) masked, and contiguous (no gap, no duplicate);
- kafka-python reads identical (offset, key, value, headers, timestamp) tuples from both (for the snappy
  topic, confluent-kafka does unless python-snappy is installed: kafka-python cannot decode snappy without it).
"""

from __future__ import annotations

import random

import kafka.codec as kafka_codec
from harness import create_topic, wait_until
from link_api import create_link, link_spec, link_status
from shadow_helpers import (
    PartitionImage,
    assert_logs_equal,
    delete_records,
    produce,
    read_images,
    read_records_confluent,
    read_records_kafka_python,
    wait_in_sync,
)

ONE, THREE, EIGHT = "fid-one", "fid-three", "fid-eight"
TOPICS = {ONE: 1, THREE: 3, EIGHT: 8}
CODECS = ["none", "gzip", "lz4", "zstd"]
SNAPPY_TOPIC = THREE  # the only topic that also gets snappy batches
# Attribute bits 0..2 of a batch: the codec it is compressed with.
CODEC_IDS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


def _records(rng: random.Random, topic: str, partitions: int, codec: str, count: int, round_: int) -> list[dict]:
    out = []
    base_ts = 1_600_000_000_000 + round_ * 10_000_000
    for i in range(count):
        size = rng.choice([0, 1, 10, 100, 1000, 20_000]) if i % 97 else 60_000
        value = None if i % 41 == 7 else rng.randbytes(size // 2) + bytes(size - size // 2)  # half compressible
        key = None if i % 5 == 0 else f"{topic}-{codec}-{i % 13}".encode()
        headers = [] if i % 3 == 0 else [("h-codec", codec.encode()), ("h-i", str(i).encode()), ("h-empty", b"")]
        if i % 11 == 0:
            headers.append(("h-null", None))
        out.append({"key": key, "value": value, "headers": headers, "partition": i % partitions,
                    # Timestamps not in order within a partition, and far from now.
                    "timestamp": base_ts + rng.randrange(0, 5_000_000)})
    return out


def _load_source(bootstrap: str, rng: random.Random) -> None:
    for round_, codec in enumerate(CODECS + ["snappy"]):
        for topic, partitions in TOPICS.items():
            if codec == "snappy" and topic != SNAPPY_TOPIC:
                continue
            count = 60 if partitions == 1 else 40 * partitions
            # A fresh idempotent producer per round: several producer ids per partition.
            produce(bootstrap, topic, _records(rng, topic, partitions, codec, count, round_),
                    **{"compression.type": codec, "linger.ms": 50, "batch.num.messages": 25})


def _pick_offsets(image: PartitionImage) -> tuple[int, int]:
    """(an offset at a batch boundary, an offset strictly inside a batch), both above the log start."""
    boundary = next(b for b in image.base_offsets[len(image.batches) // 3:] if b > image.log_start_offset)
    inside = next(base + count // 2 for base, count in zip(image.base_offsets, image.record_counts, strict=True)
                  if count >= 3 and base > boundary)
    return boundary, inside


def _assert_source_is_interesting(images: dict[tuple[str, int], PartitionImage]) -> None:
    """Guard the test's own premises: mixed codecs, idempotent batches, several records per batch."""
    for topic in TOPICS:
        codecs = {c for (t, _), img in images.items() if t == topic for c in img.compressions}
        expected = {CODEC_IDS[c] for c in CODECS} | ({CODEC_IDS["snappy"]} if topic == SNAPPY_TOPIC else set())
        assert codecs == expected, (topic, codecs)
    for tp, img in images.items():
        assert all(pid >= 0 for pid in img.producer_ids), f"{tp}: a batch without a producer id"
        assert len(set(img.producer_ids)) >= 2, f"{tp}: expected batches of several idempotent producers"
        assert max(img.record_counts) >= 3, f"{tp}: no multi-record batch"


def _assert_records_equal(source_bootstrap: str, shadow_bootstrap: str) -> None:
    # kafka-python reads snappy only with python-snappy installed; without it, the snappy topic is read
    # with confluent-kafka instead.
    plain = {t: n for t, n in TOPICS.items() if t != SNAPPY_TOPIC or kafka_codec.has_snappy()}
    expected = read_records_kafka_python(source_bootstrap, plain)
    got = read_records_kafka_python(shadow_bootstrap, plain)
    assert len(expected) > 1000 and {r[0] for r in expected} == set(plain)
    append_time = {r[7] for r in expected if r[0] == ONE}
    assert append_time == {1}, f"{ONE} should have LogAppendTime timestamps, has types {append_time}"
    assert got == expected
    if SNAPPY_TOPIC not in plain:
        expected_snappy = read_records_confluent(source_bootstrap, {SNAPPY_TOPIC: TOPICS[SNAPPY_TOPIC]})
        got_snappy = read_records_confluent(shadow_bootstrap, {SNAPPY_TOPIC: TOPICS[SNAPPY_TOPIC]})
        assert len(expected_snappy) > 300
        assert got_snappy == expected_snappy


def test_shadow_partitions_equal_the_source_byte_for_byte(clusters) -> None:
    source, shadow = clusters
    rng = random.Random(20240503)
    for topic, partitions in TOPICS.items():
        config = {"message.timestamp.type": "LogAppendTime"} if topic == ONE else {}
        create_topic(source.bootstrap, topic, partitions=partitions, config=config)
    _load_source(source.bootstrap, rng)
    before = read_images(source, TOPICS)
    _assert_source_is_interesting(before)

    # DeleteRecords before the link exists: one partition cut at a batch boundary, one inside a batch, and
    # one emptied (cut at its high watermark).
    boundary, _ = _pick_offsets(before[(THREE, 0)])
    _, inside = _pick_offsets(before[(THREE, 1)])
    emptied = before[(EIGHT, 7)].high_watermark
    delete_records(source.bootstrap, {(THREE, 0): boundary, (THREE, 1): inside, (EIGHT, 7): emptied})

    create_link(shadow, link_spec(source, prefixes=("fid-",)))
    wait_in_sync(source, shadow, TOPICS, timeout=60)
    for restarted in (False, True):
        if restarted:
            # Offsets, log start offsets (mid-batch too) and the link itself survive a shadow restart.
            shadow.restart()
            wait_in_sync(source, shadow, TOPICS, timeout=30)
        images = assert_logs_equal(source, shadow, TOPICS, require_data=False)
        assert all(img.batches for tp, img in images.items() if tp != (EIGHT, 7))
        assert images[(THREE, 0)].log_start_offset == boundary == images[(THREE, 0)].base_offsets[0]
        first = images[(THREE, 1)]
        assert first.log_start_offset == inside and first.base_offsets[0] < inside < first.next_offsets[0]
        assert images[(THREE, 2)].log_start_offset == 0
        empty = images[(EIGHT, 7)]
        assert (empty.log_start_offset, empty.high_watermark, empty.batches) == (emptied, emptied, [])
        _assert_records_equal(source.bootstrap, shadow.bootstrap)
    # An umbra source lacks nothing, and every API goes at the newest version umbra's client knows.
    capabilities = link_status(shadow)["source_capabilities"]
    assert capabilities["degraded"] == {} and capabilities["fetch_sessions"] is True, capabilities
    assert capabilities["api_versions"] == {"1": {
        "Fetch": 16, "ListOffsets": 10, "Metadata": 12, "OffsetFetch": 9, "FindCoordinator": 4, "ListGroups": 4,
        "ApiVersions": 3, "DescribeAcls": 3, "DescribeConfigs": 4, "OffsetForLeaderEpoch": 4,
        "SaslHandshake": 1, "SaslAuthenticate": 2}}, \
        capabilities["api_versions"]


def test_shadow_follows_delete_records_on_the_source(clusters) -> None:
    """DeleteRecords on the source while the link runs: the shadow's log start follows, at a batch boundary
    and inside a batch, and later data still arrives byte for byte."""
    source, shadow = clusters
    rng = random.Random(7)
    topics = {EIGHT: TOPICS[EIGHT]}
    create_topic(source.bootstrap, EIGHT, partitions=TOPICS[EIGHT])
    for round_, codec in enumerate(CODECS):
        produce(source.bootstrap, EIGHT, _records(rng, EIGHT, 8, codec, 200, round_),
                **{"compression.type": codec, "linger.ms": 50, "batch.num.messages": 25})
    create_link(shadow, link_spec(source, prefixes=("fid-",)))
    wait_in_sync(source, shadow, topics, timeout=60)

    before = read_images(source, topics)
    boundary, _ = _pick_offsets(before[(EIGHT, 2)])
    _, inside = _pick_offsets(before[(EIGHT, 5)])
    delete_records(source.bootstrap, {(EIGHT, 2): boundary, (EIGHT, 5): inside})

    # No new data: only the log start offsets change, and incremental Fetch responses must carry them.
    def start_followed() -> bool:
        doc = wait_in_sync(source, shadow, topics, timeout=30)
        starts = {(p["topic"], p["partition"]): p["shadow_log_start_offset"] for p in doc["partitions"]}
        return starts[(EIGHT, 2)] == boundary and starts[(EIGHT, 5)] == inside

    wait_until(start_followed, timeout=30, interval=0.1, message="shadow log start offsets following DeleteRecords")
    assert_logs_equal(source, shadow, topics)
    # Then more data after the cut, still byte for byte.
    produce(source.bootstrap, EIGHT, _records(rng, EIGHT, 8, "zstd", 80, 9), **{"compression.type": "zstd"})
    wait_in_sync(source, shadow, topics, timeout=30)
    images = assert_logs_equal(source, shadow, topics)
    assert images[(EIGHT, 2)].log_start_offset == boundary == images[(EIGHT, 2)].base_offsets[0]
    cut = images[(EIGHT, 5)]
    assert cut.log_start_offset == inside and cut.base_offsets[0] < inside < cut.next_offsets[0]
    assert read_records_kafka_python(shadow.bootstrap, topics) == read_records_kafka_python(source.bootstrap, topics)
