"""confluent-kafka (librdkafka) producer and consumer helpers shared by the compatibility tests."""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_CREATE_TIME,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from roundtrip import PARTITIONS, ROUND_TRIP_TIMEOUT_SECONDS, ConsumedRecord, SentRecord, normalise_headers, summarise


def produce_all(
    bootstrap: str, topic: str, records: Sequence[SentRecord], config: Mapping[str, Any]
) -> dict[int, tuple[int, int]]:
    """Produce every record to its partition; returns index -> (partition, offset) from delivery reports."""
    acknowledged: dict[int, tuple[int, int]] = {}
    errors: list[str] = []

    def on_delivery(index: int, error: KafkaError | None, message: Any) -> None:
        if error is not None:
            errors.append(f"record {index}: {error}")
        else:
            acknowledged[index] = (message.partition(), message.offset())

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, **config})
    for record in records:
        while True:
            try:
                producer.produce(
                    topic,
                    value=record.value,
                    key=record.key,
                    partition=record.partition,
                    timestamp=record.timestamp_ms,
                    headers=list(record.headers) or None,
                    on_delivery=functools.partial(on_delivery, record.index),
                )
                break
            except BufferError:  # local queue full: serve delivery reports, then retry
                producer.poll(0.1)
        producer.poll(0)
    undelivered = producer.flush(ROUND_TRIP_TIMEOUT_SECONDS)
    assert undelivered == 0, f"{undelivered} records still undelivered after {ROUND_TRIP_TIMEOUT_SECONDS}s"
    assert not errors, f"{len(errors)} delivery errors, first ones: {errors[:5]}"
    return acknowledged


def consumed_record(message: Any) -> ConsumedRecord:
    timestamp_type, timestamp_ms = message.timestamp()
    return ConsumedRecord(
        partition=message.partition(),
        offset=message.offset(),
        key=message.key(),
        value=message.value(),
        headers=normalise_headers(message.headers()),
        timestamp_ms=timestamp_ms,
        create_time=timestamp_type == TIMESTAMP_CREATE_TIME,
    )


def consume_assigned(
    bootstrap: str,
    topic: str,
    expected_count: int,
    start_offsets: Mapping[int, int] | None = None,
    partitions: int = PARTITIONS,
) -> list[ConsumedRecord]:
    """Read explicitly assigned partitions until every one is at its end and `expected_count` arrived."""
    offsets = start_offsets or {partition: OFFSET_BEGINNING for partition in range(partitions)}
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"compat-assign-{uuid.uuid4().hex[:8]}",  # required by the client; nothing is committed
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, partition, offset) for partition, offset in offsets.items()])
        return drain(consumer, expected_count, len(offsets))
    finally:
        consumer.close()


def drain(consumer: Consumer, expected_count: int, partition_count: int) -> list[ConsumedRecord]:
    consumed: list[ConsumedRecord] = []
    at_end: set[int] = set()
    deadline = time.monotonic() + ROUND_TRIP_TIMEOUT_SECONDS
    while len(consumed) < expected_count or len(at_end) < partition_count:
        if time.monotonic() > deadline:
            pytest.fail(
                f"consumed {len(consumed)} of {expected_count} records ({summarise(consumed)}), "
                f"partitions at end: {sorted(at_end)}, after {ROUND_TRIP_TIMEOUT_SECONDS}s"
            )
        for message in consumer.consume(num_messages=1000, timeout=0.05):
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    at_end.add(message.partition() or 0)
                    continue
                raise KafkaException(error)
            at_end.discard(message.partition())
            consumed.append(consumed_record(message))
    return consumed
