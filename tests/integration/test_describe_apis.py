"""DescribeLogDirs, DescribeProducers and ListPartitionReassignments through kafka-python's admin client."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Producer
from harness import create_topic
from kafka import KafkaAdminClient
from kafka import TopicPartition as KTopicPartition


@pytest.fixture
def admin(broker: Any) -> Iterator[KafkaAdminClient]:
    client = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=30_000)
    try:
        yield client
    finally:
        client.close()


def _produce(bootstrap: str, topic: str, count: int, idempotent: bool) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": idempotent, "linger.ms": 0})
    for i in range(count):
        producer.produce(topic, value=b"v" * 100, key=str(i).encode(), partition=i % 2)
    assert producer.flush(30) == 0


def test_describe_log_dirs_reports_each_partitions_size(broker: Any, admin: KafkaAdminClient) -> None:
    topic = f"dirs-{uuid.uuid4().hex[:8]}"
    create_topic(broker.bootstrap, topic, partitions=2)
    _produce(broker.bootstrap, topic, 200, idempotent=False)
    described = admin.describe_log_dirs({topic: [0, 1, 7]})  # 7 does not exist: left out
    [entry] = described
    assert entry["broker"] == 1  # the fixture broker's node id (the default)
    [log_dir] = entry["log_dirs"]
    assert log_dir["error_code"] == 0 and log_dir["log_dir"] == str(broker.data_dir.resolve())
    assert 0 < log_dir["usable_bytes"] <= log_dir["total_bytes"]
    [listed] = log_dir["topics"]
    on_disk = {
        int(d.name.rsplit("-", 1)[1]): sum(f.stat().st_size for f in d.glob("*.log"))
        for d in broker.data_dir.glob(f"{topic}-*")
    }
    assert {p["partition_index"]: p["partition_size"] for p in listed["partitions"]} == on_disk  # no 7
    assert all(size > 0 for size in on_disk.values())


def test_describe_producers_lists_idempotent_producers(broker: Any, admin: KafkaAdminClient) -> None:
    topic = f"producers-{uuid.uuid4().hex[:8]}"
    create_topic(broker.bootstrap, topic, partitions=2)
    _produce(broker.bootstrap, topic, 10, idempotent=True)
    described = admin.describe_producers([KTopicPartition(topic, 0), KTopicPartition(topic, 1)])
    reassignments = admin.list_partition_reassignments()
    assert sorted(described) == [KTopicPartition(topic, 0), KTopicPartition(topic, 1)]
    for state in described.values():
        [producer] = state.active_producers
        assert producer.producer_id >= 0 and producer.producer_epoch == 0
        assert producer.last_sequence == 4  # five records in each partition: sequences 0..4
    assert reassignments == {}
