"""kafka-python (KafkaProducer, KafkaConsumer, KafkaAdminClient) against a real umbra broker."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import pytest
from harness import BrokerProcess, wait_for_topic
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from roundtrip import (
    PARTITIONS,
    ROUND_TRIP_TIMEOUT_SECONDS,
    ConsumedRecord,
    SentRecord,
    check_round_trip,
    make_records,
    normalise_headers,
    summarise,
)

CREATE_TIME = 0  # kafka-python's timestamp_type for CreateTime (1 is LogAppendTime)


def create_topic_with_kafka_python(bootstrap: str, topic: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=20_000)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)], timeout_ms=20_000)
    finally:
        admin.close()
    wait_for_topic(bootstrap, topic, PARTITIONS)


def produce_all(bootstrap: str, topic: str, records: Sequence[SentRecord], **config: Any) -> dict[int, tuple[int, int]]:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, **config)
    try:
        futures = [
            (
                record.index,
                producer.send(
                    topic,
                    value=record.value,
                    key=record.key,
                    headers=list(record.headers),
                    partition=record.partition,
                    timestamp_ms=record.timestamp_ms,
                ),
            )
            for record in records
        ]
        producer.flush(timeout=ROUND_TRIP_TIMEOUT_SECONDS)
        acknowledged = {}
        for index, future in futures:
            metadata = future.get(timeout=ROUND_TRIP_TIMEOUT_SECONDS)
            acknowledged[index] = (metadata.partition, metadata.offset)
        return acknowledged
    finally:
        producer.close(timeout=10)


def consumed_record(message: Any) -> ConsumedRecord:
    return ConsumedRecord(
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value,
        headers=normalise_headers(message.headers),
        timestamp_ms=message.timestamp,
        create_time=message.timestamp_type == CREATE_TIME,
    )


def drain(consumer: KafkaConsumer, partitions: list[TopicPartition], expected_count: int) -> list[ConsumedRecord]:
    """Poll until `expected_count` records arrived and every partition's position reached its end offset."""
    consumed: list[ConsumedRecord] = []
    deadline = time.monotonic() + ROUND_TRIP_TIMEOUT_SECONDS
    end_offsets = consumer.end_offsets(partitions)
    while True:
        if len(consumed) >= expected_count and consumer.assignment() == set(partitions):
            if all(consumer.position(tp) >= end_offsets[tp] for tp in partitions):
                return consumed
        if time.monotonic() > deadline:
            pytest.fail(
                f"consumed {len(consumed)} of {expected_count} records ({summarise(consumed)}) in {ROUND_TRIP_TIMEOUT_SECONDS}s"
            )
        for batch in consumer.poll(timeout_ms=500, max_records=5_000).values():
            consumed.extend(consumed_record(message) for message in batch)


@pytest.mark.parametrize("compression", [None, "zstd"])
def test_round_trip(broker: BrokerProcess, compression: str | None) -> None:
    topic = f"compat-kafka-python-{compression or 'none'}"
    create_topic_with_kafka_python(broker.bootstrap, topic)
    records = make_records(f"kafka-python-{compression}")

    acknowledged = produce_all(broker.bootstrap, topic, records, acks="all", compression_type=compression)

    partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False)
    try:
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        consumed = drain(consumer, partitions, len(records))
    finally:
        consumer.close()

    check_round_trip(records, consumed, acknowledged)


def test_consumer_group_subscribe_and_commit(broker: BrokerProcess) -> None:
    topic = "compat-kafka-python-group"
    group = "compat-kafka-python-group"
    create_topic_with_kafka_python(broker.bootstrap, topic)
    records = make_records("kafka-python-group", count=3_000)
    acknowledged = produce_all(broker.bootstrap, topic, records, acks=1)

    partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=broker.bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    try:
        consumed = drain(consumer, partitions, len(records))
        consumer.commit()
        committed = {tp.partition: consumer.committed(tp) for tp in partitions}
    finally:
        consumer.close()

    check_round_trip(records, consumed, acknowledged)
    assert committed == {p: sum(1 for r in records if r.partition == p) for p in range(PARTITIONS)}
