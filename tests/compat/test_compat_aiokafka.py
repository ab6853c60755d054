"""aiokafka (AIOKafkaProducer, AIOKafkaConsumer) against a real umbra broker.

The tests are plain functions that run their own event loop with `asyncio.run`, so no pytest
asyncio plugin is needed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from harness import BrokerProcess, create_topic
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

CREATE_TIME = 0  # aiokafka's timestamp_type for CreateTime (1 is LogAppendTime)


async def produce_all(
    bootstrap: str, topic: str, records: Sequence[SentRecord], **config: Any
) -> dict[int, tuple[int, int]]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, **config)
    await producer.start()
    try:
        futures = [
            await producer.send(
                topic,
                value=record.value,
                key=record.key,
                partition=record.partition,
                timestamp_ms=record.timestamp_ms,
                headers=list(record.headers),
            )
            for record in records
        ]
        results = await asyncio.wait_for(asyncio.gather(*futures), ROUND_TRIP_TIMEOUT_SECONDS)
    finally:
        await producer.stop()
    return {
        record.index: (metadata.partition, metadata.offset) for record, metadata in zip(records, results, strict=True)
    }


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


async def drain(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition], expected_count: int
) -> list[ConsumedRecord]:
    consumed: list[ConsumedRecord] = []
    deadline = time.monotonic() + ROUND_TRIP_TIMEOUT_SECONDS
    end_offsets = await consumer.end_offsets(partitions)
    while True:
        if len(consumed) >= expected_count and consumer.assignment() == set(partitions):
            positions = [await consumer.position(tp) for tp in partitions]
            if all(position >= end_offsets[tp] for position, tp in zip(positions, partitions, strict=True)):
                return consumed
        if time.monotonic() > deadline:
            pytest.fail(
                f"consumed {len(consumed)} of {expected_count} records ({summarise(consumed)}) in {ROUND_TRIP_TIMEOUT_SECONDS}s"
            )
        batches = await consumer.getmany(timeout_ms=500, max_records=5_000)
        for batch in batches.values():
            consumed.extend(consumed_record(message) for message in batch)


async def round_trip_assigned(
    bootstrap: str, topic: str, records: Sequence[SentRecord], **producer_config: Any
) -> None:
    acknowledged = await produce_all(bootstrap, topic, records, **producer_config)
    partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        consumed = await drain(consumer, partitions, len(records))
    finally:
        await consumer.stop()
    check_round_trip(records, consumed, acknowledged)


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_round_trip(broker: BrokerProcess, compression: str | None) -> None:
    topic = f"compat-aiokafka-{compression or 'none'}"
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    records = make_records(f"aiokafka-{compression}")
    asyncio.run(round_trip_assigned(broker.bootstrap, topic, records, acks="all", compression_type=compression))


def test_round_trip_idempotent(broker: BrokerProcess) -> None:
    topic = "compat-aiokafka-idempotent"
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    records = make_records("aiokafka-idempotent", count=3_000)
    asyncio.run(round_trip_assigned(broker.bootstrap, topic, records, acks="all", enable_idempotence=True))


def test_consumer_group_subscribe_and_commit(broker: BrokerProcess) -> None:
    topic = "compat-aiokafka-group"
    group = "compat-aiokafka-group"
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    records = make_records("aiokafka-group", count=3_000)

    async def scenario() -> tuple[list[ConsumedRecord], dict[int, tuple[int, int]], dict[int, int | None]]:
        acknowledged = await produce_all(broker.bootstrap, topic, records, acks=1)
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=broker.bootstrap,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            consumed = await drain(consumer, partitions, len(records))
            await consumer.commit()
            committed = {tp.partition: await consumer.committed(tp) for tp in partitions}
        finally:
            await consumer.stop()
        return consumed, acknowledged, committed

    consumed, acknowledged, committed = asyncio.run(scenario())
    check_round_trip(records, consumed, acknowledged)
    assert committed == {p: sum(1 for r in records if r.partition == p) for p in range(PARTITIONS)}
