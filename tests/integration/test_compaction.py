"""Log compaction on a real broker with confluent-kafka: a compacted topic keeps the latest value per key at its
original offsets, refuses keyless records, and __consumer_offsets (compacted too, also when an older data dir had
it as delete) still gives the committed offsets back after a restart; a shadow link syncs a compacted topic's
policy and the shadow compacts its own copy."""

from __future__ import annotations

import json
import re
import urllib.request
import uuid
from collections import defaultdict
from typing import Any

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")

from confluent_kafka.admin import AdminClient, ConfigResource  # noqa: E402
from harness import create_topic, http_get, wait_until  # noqa: E402

TOPIC = "table"
KEYS = [f"key-{i}".encode() for i in range(8)]
DELETED = KEYS[:2]
ROUNDS = 25
BROKER_CONFIG = {"log_cleaner_interval_ms": 100, "offsets_topic_segment_bytes": 1024,
                 "group_initial_rebalance_delay_ms": 0}
TOPIC_CONFIG = {"cleanup.policy": "compact", "segment.bytes": "1024", "min.cleanable.dirty.ratio": "0.01"}


def cleaner_passes(broker: Any, topic: str) -> float:
    status, body = http_get(f"{broker.admin_url}/metrics")
    assert status == 200
    match = re.search(rf'^umbra_log_cleaner_passes_total\{{topic="{re.escape(topic)}"\}} (\S+)$', body.decode(),
                      re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def read_all(bootstrap: str) -> list[tuple[int, bytes | None, bytes | None]]:
    """(offset, key, value) of every record from the beginning to the high watermark."""
    consumer = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4()}",
                                         "enable.auto.commit": False, "enable.partition.eof": True})
    try:
        _, high = consumer.get_watermark_offsets(confluent_kafka.TopicPartition(TOPIC, 0), timeout=10)
        consumer.assign([confluent_kafka.TopicPartition(TOPIC, 0, confluent_kafka.OFFSET_BEGINNING)])
        seen: list[tuple[int, bytes | None, bytes | None]] = []
        while True:
            message = consumer.poll(5)
            assert message is not None, f"no record and no end of partition after offset {seen[-1:]}"
            if message.error() is not None:
                assert message.error().code() == confluent_kafka.KafkaError._PARTITION_EOF, message.error()
                if message.offset() >= high:
                    return seen
                continue
            seen.append((message.offset(), message.key(), message.value()))
    finally:
        consumer.close()


def produce_updates(bootstrap: str) -> None:
    producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                                         "linger.ms": 2})
    failures: list[Any] = []
    for round_ in range(ROUNDS):
        for key in KEYS:
            value = None if round_ == ROUNDS - 1 and key in DELETED else f"{key.decode()}-v{round_}".encode()
            producer.produce(TOPIC, key=key, value=value,
                             on_delivery=lambda err, _msg: failures.append(err) if err else None)
        producer.poll(0)
    assert producer.flush(30) == 0 and failures == []


def compacted(records: list[tuple[int, bytes | None, bytes | None]]) -> bool:
    """Every table key once, with its latest value (a tombstone for the deleted ones)."""
    by_key: dict[bytes | None, list[bytes | None]] = defaultdict(list)
    for _, key, value in records:
        by_key[key].append(value)
    return all(by_key[key] == ([None] if key in DELETED else [f"{key.decode()}-v{ROUNDS - 1}".encode()])
               for key in KEYS)


def wait_compacted(produce_to: str, read_from: str, what: str) -> list[tuple[int, bytes | None, bytes | None]]:
    """Produce markers to ``produce_to`` until the topic read from ``read_from`` is compacted; its records.
    Markers roll the segment holding the last updates out of the active position, so the cleaner reaches them."""
    marker = confluent_kafka.Producer({"bootstrap.servers": produce_to, "linger.ms": 0})

    def cleaned() -> list[tuple[int, bytes | None, bytes | None]] | None:
        marker.produce(TOPIC, key=b"marker", value=b"m")
        marker.flush(10)
        records = read_all(read_from)
        return records if compacted(records) else None

    result: list[tuple[int, bytes | None, bytes | None]] = wait_until(cleaned, timeout=60, interval=0.2, message=what)
    return result


def test_compacted_topic_and_consumer_offsets_survive_a_restart(broker_factory: Any) -> None:
    broker = broker_factory("broker", config=BROKER_CONFIG)
    create_topic(broker.bootstrap, TOPIC, partitions=1, config=TOPIC_CONFIG)
    produce_updates(broker.bootstrap)  # offsets 0..ROUNDS * len(KEYS) - 1 (the cleaner may start meanwhile)

    records = wait_compacted(broker.bootstrap, broker.bootstrap, "the cleaner to compact the topic")
    assert cleaner_passes(broker, TOPIC) >= 1
    offsets = [offset for offset, _, _ in records]
    assert offsets == sorted(set(offsets)) and offsets[-1] >= ROUNDS * len(KEYS)  # gaps, never renumbered
    latest = {key: offset for offset, key, _ in records}
    assert [latest[key] for key in KEYS] == [(ROUNDS - 1) * len(KEYS) + i for i in range(len(KEYS))]

    # A record without a key is refused.
    keyless = confluent_kafka.Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0, "retries": 0})
    errors: list[Any] = []
    keyless.produce(TOPIC, value=b"no key", on_delivery=lambda err, _msg: errors.append(err))
    keyless.flush(10)
    assert [error.code() for error in errors] == [confluent_kafka.KafkaError.INVALID_RECORD]

    # Enough commits to roll __consumer_offsets segments, so the cleaner compacts it too.
    group = "compaction-readers"
    committer = confluent_kafka.Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group,
                                          "enable.auto.commit": False})
    try:
        last = 0
        for last in range(1, 60):
            committer.commit(offsets=[confluent_kafka.TopicPartition(TOPIC, 0, last)], asynchronous=False)

        def offsets_compacted() -> bool:
            committer.commit(offsets=[confluent_kafka.TopicPartition(TOPIC, 0, last)], asynchronous=False)
            return cleaner_passes(broker, "__consumer_offsets") >= 1

        wait_until(offsets_compacted, timeout=60, interval=0.2, message="the cleaner to compact __consumer_offsets")
    finally:
        committer.close()

    broker.stop()
    broker.start()

    assert compacted(read_all(broker.bootstrap))
    reader = confluent_kafka.Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group,
                                       "enable.auto.commit": False})
    try:
        (stored,) = reader.committed([confluent_kafka.TopicPartition(TOPIC, 0)], timeout=30)
        assert stored.offset == last
    finally:
        reader.close()


def test_a_delete_policy_offsets_topic_from_an_older_data_dir_becomes_compacted(broker_factory: Any) -> None:
    broker = broker_factory("broker", config={**BROKER_CONFIG, "log_cleaner_enabled": False})
    create_topic(broker.bootstrap, TOPIC, partitions=1)
    group = "upgraded"
    committer = confluent_kafka.Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group,
                                          "enable.auto.commit": False})
    try:
        for offset in range(1, 30):
            committer.commit(offsets=[confluent_kafka.TopicPartition(TOPIC, 0, offset)], asynchronous=False)
    finally:
        committer.close()
    broker.stop()

    # The offsets topic as data dirs from before compaction have it.
    metadata_file = broker.data_dir / "cluster-metadata.json"
    metadata = json.loads(metadata_file.read_text())
    (offsets_topic,) = [t for t in metadata["topics"] if t["name"] == "__consumer_offsets"]
    offsets_topic["configs"] = {"cleanup.policy": "delete", "retention.ms": "-1"}
    metadata_file.write_text(json.dumps(metadata))
    assert broker.config is not None
    broker.config["log_cleaner_enabled"] = True
    broker.start()

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    resource = ConfigResource("topic", "__consumer_offsets")
    described = admin.describe_configs([resource])[resource].result(timeout=30)
    assert described["cleanup.policy"].value == "compact"
    wait_until(lambda: cleaner_passes(broker, "__consumer_offsets") >= 1, timeout=60,
               message="the cleaner to compact the switched __consumer_offsets")
    broker.stop()
    broker.start()
    reader = confluent_kafka.Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group,
                                       "enable.auto.commit": False})
    try:
        (stored,) = reader.committed([confluent_kafka.TopicPartition(TOPIC, 0)], timeout=30)
        assert stored.offset == 29
    finally:
        reader.close()


def test_a_shadow_of_a_compacted_topic_syncs_the_policy_and_compacts_its_copy(broker_factory: Any) -> None:
    # The source keeps every record (its cleaner is off), so what the shadow ends up with is its own cleaning.
    source = broker_factory("source", node_id=1, config={"log_cleaner_enabled": False})
    shadow = broker_factory("shadow", node_id=2, config={"log_cleaner_interval_ms": 100, "log_segment_bytes": 1024})
    create_topic(source.bootstrap, TOPIC, partitions=1, config=TOPIC_CONFIG)
    produce_updates(source.bootstrap)
    spec = {"name": "dr", "source": {"bootstrap_servers": [source.bootstrap], "client": {"fetch_max_wait_ms": 100}},
            "topics": {"sync_interval": "500ms", "filters": [{"include": "literal", "name": TOPIC}]}}
    request = urllib.request.Request(f"{shadow.admin_url}/v1/shadow-links", data=json.dumps(spec).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 201

    admin = AdminClient({"bootstrap.servers": shadow.bootstrap})
    resource = ConfigResource("topic", TOPIC)

    def synced_policy() -> bool:
        described = admin.describe_configs([resource])[resource].result(timeout=30)
        return described["cleanup.policy"].value == "compact" and described["min.cleanable.dirty.ratio"].value == "0.01"

    wait_until(synced_policy, timeout=60, interval=0.2, message="the shadow topic to take the source's policy",
               retry_on=(confluent_kafka.KafkaException,))
    records = wait_compacted(source.bootstrap, shadow.bootstrap, "the shadow to compact its copy")
    assert cleaner_passes(shadow, TOPIC) >= 1
    latest = {key: offset for offset, key, _ in records}
    assert [latest[key] for key in KEYS] == [(ROUNDS - 1) * len(KEYS) + i for i in range(len(KEYS))]
    assert len(read_all(source.bootstrap)) > len(records)  # the source was not compacted: the shadow did it
