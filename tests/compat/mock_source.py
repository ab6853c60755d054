"""Helpers for shadow links whose source is librdkafka's mock cluster (see tests/rdkafka_mock.py).

The records come from `roundtrip.make_records` (keys, some null; values of every kind; repeated, empty and
binary headers; explicit non-monotonic CreateTime timestamps) and are produced in chunks, each with another
compression codec, so one topic holds batches of every codec. The checks read both sides twice, with
independent code: record by record with confluent-kafka, and batch by batch as raw bytes (leader epoch
masked) through a sessionless Fetch.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from confluent_client import consume_assigned, produce_all
from confluent_kafka import Consumer, TopicPartition
from harness import BrokerProcess, wait_until
from link_api import link_status
from rdkafka_mock import MockCluster
from roundtrip import SentRecord, check_round_trip

from umbra.client import SourceCluster
from umbra.records.batch import PARTITION_LEADER_EPOCH_OFFSET, iter_batch_headers

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
EARLIEST, LATEST = -2, -1


def produce_with_every_codec(bootstrap: str, topic: str, records: Sequence[SentRecord],
                             **config: Any) -> dict[int, tuple[int, int]]:
    """Produce ``records`` in one chunk per codec (every other chunk idempotent); index -> (partition, offset)."""
    acknowledged: dict[int, tuple[int, int]] = {}
    chunk = -(-len(records) // len(CODECS))
    for i, codec in enumerate(CODECS):
        part = records[i * chunk:(i + 1) * chunk]
        if part:
            conf = {"compression.type": codec, "acks": "all", "enable.idempotence": i % 2 == 0, **config}
            acknowledged.update(produce_all(bootstrap, topic, part, conf))
    return acknowledged


def mock_link_spec(mock: MockCluster, name: str = "dr", groups: Sequence[str] = ("billing",),
                   **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": name,
        "source": {"bootstrap_servers": mock.bootstraps.split(","), "client": {"fetch_max_wait_ms": 100}},
        "topics": {"sync_interval": "500ms", "filters": [{"include": "prefix", "name": ""}]},
        # The mock has no ListGroups: the link names its groups.
        "consumer_offsets": {"enabled": True, "interval": "500ms",
                             "groups": [{"include": "literal", "name": g} for g in groups]},
        "acls": {"enabled": True, "interval": "500ms"},
    }
    spec.update(overrides)
    return spec


# -- reading both sides --------------------------------------------------------------------------------

async def _read_batches(bootstrap: str, topic: str, partitions: int) -> dict[int, list[bytes]]:
    """Every batch of every partition, from its log start offset to its high watermark, leader epoch zeroed."""
    async with SourceCluster(bootstrap.split(","), client_id="test-reader") as cluster:
        await cluster.refresh_metadata([topic])
        tps = [(topic, p) for p in range(partitions)]
        starts = await cluster.list_offsets(tps, EARLIEST)
        ends = await cluster.list_offsets(tps, LATEST)
        result: dict[int, list[bytes]] = {}
        for tp in tps:
            offset, end = starts[tp].offset, ends[tp].offset
            batches: list[bytes] = []
            while offset < end:
                fetched = (await cluster.fetch_at({tp: offset}, 4 << 20))[tp]
                assert fetched.error_code == 0, f"{tp} at {offset}: error {fetched.error_code}"
                headers = [h for h in iter_batch_headers(fetched.records) if h.last_offset >= offset]
                assert headers, f"{tp}: no batch at offset {offset} (high watermark {end})"
                for header in headers:
                    batch = bytearray(fetched.records[header.position:header.end_position])
                    batch[PARTITION_LEADER_EPOCH_OFFSET:PARTITION_LEADER_EPOCH_OFFSET + 4] = bytes(4)
                    batches.append(bytes(batch))
                offset = headers[-1].next_offset
            result[tp[1]] = batches
        return result


def read_batches(bootstrap: str, topic: str, partitions: int) -> dict[int, list[bytes]]:
    return asyncio.run(asyncio.wait_for(_read_batches(bootstrap, topic, partitions), 120))


def watermarks(bootstrap: str, topic: str, partitions: int) -> dict[int, tuple[int, int]]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "test-watermarks"})
    try:
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)
                for p in range(partitions)}
    finally:
        consumer.close()


def assert_mirrored(mock: MockCluster, shadow: BrokerProcess, topic: str, partitions: int,
                    records: Sequence[SentRecord], acknowledged: dict[int, tuple[int, int]]) -> None:
    """The shadow holds exactly what the source acknowledged, at the same offsets, in the same batch bytes."""
    assert watermarks(shadow.bootstrap, topic, partitions) == watermarks(mock.bootstraps, topic, partitions)
    consumed = consume_assigned(shadow.bootstrap, topic, len(records), partitions=partitions)
    check_round_trip(records, consumed, acknowledged)
    source_batches = read_batches(mock.bootstraps, topic, partitions)
    shadow_batches = read_batches(shadow.bootstrap, topic, partitions)
    for p in range(partitions):
        assert len(shadow_batches[p]) == len(source_batches[p]), f"partition {p}: batch counts differ"
        for i, (ours, theirs) in enumerate(zip(shadow_batches[p], source_batches[p], strict=True)):
            assert ours == theirs, f"partition {p}: batch {i} differs from the source's"


def wait_mirrored(mock: MockCluster, shadow: BrokerProcess, topic: str, partitions: int, name: str = "dr",
                  timeout: float = 90) -> dict[str, Any]:
    """Wait until every partition's shadow high watermark is the source's, and status shows lag 0."""
    def done() -> dict[str, Any] | None:
        source = watermarks(mock.bootstraps, topic, partitions)
        doc = link_status(shadow, name)
        parts = {p["partition"]: p for p in doc["partitions"] if p["topic"] == topic}
        for p in range(partitions):
            entry = parts.get(p)
            if entry is None or entry["shadow_high_watermark"] != source[p][1] or entry["lag"] != 0:
                return None
        return doc

    return wait_until(done, timeout=timeout, interval=0.2,
                      message=lambda: f"shadow caught up with the mock: {status_summary(shadow, name)}")


def status_summary(shadow: BrokerProcess, name: str = "dr") -> str:
    doc = link_status(shadow, name)
    brief = {"tasks": doc["tasks"], "events": doc["events"][-10:],
             "partitions": [{k: p.get(k) for k in ("partition", "state", "reason", "source_high_watermark",
                                                    "shadow_high_watermark", "source_broker", "source_errors")}
                            for p in doc["partitions"]]}
    return json.dumps(brief)[:4000]


def partitions_by_number(doc: Mapping[str, Any], topic: str) -> dict[int, dict[str, Any]]:
    return {p["partition"]: p for p in doc["partitions"] if p["topic"] == topic}


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        got = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return {tp.partition: tp.offset for tp in got if tp.offset >= 0}
    finally:
        consumer.close()


def commit(bootstrap: str, group: str, topic: str, offsets: Mapping[int, int]) -> None:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        consumer.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False)
    finally:
        consumer.close()


def leaders(bootstrap: str, topic: str) -> dict[int, int]:
    """partition -> leader broker id, as the source's Metadata says."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "test-leaders"})
    try:
        meta = consumer.list_topics(topic, timeout=10)
        return {p: info.leader for p, info in meta.topics[topic].partitions.items()}
    finally:
        consumer.close()


def wait_status(shadow: BrokerProcess, predicate: Callable[[dict[str, Any]], Any], what: str,
                timeout: float = 30, name: str = "dr") -> Any:
    return wait_until(lambda: predicate(link_status(shadow, name)), timeout=timeout, interval=0.1,
                      message=lambda: f"{what}: {status_summary(shadow, name)}")
