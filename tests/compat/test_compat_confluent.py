"""confluent-kafka (librdkafka) against a real umbra broker."""

from __future__ import annotations

import time

import pytest
from confluent_client import consume_assigned, drain, produce_all
from confluent_kafka import Consumer, TopicPartition
from harness import BrokerProcess, create_topic
from roundtrip import PARTITIONS, SentRecord, check_round_trip, make_records

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


@pytest.mark.parametrize("codec", CODECS)
def test_round_trip_with_compression(broker: BrokerProcess, codec: str) -> None:
    topic = f"compat-confluent-{codec}"
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    records = make_records(f"confluent-{codec}")

    acknowledged = produce_all(broker.bootstrap, topic, records, {"compression.type": codec, "acks": "1"})
    consumed = consume_assigned(broker.bootstrap, topic, len(records))

    check_round_trip(records, consumed, acknowledged)


def test_round_trip_idempotent_acks_all(broker: BrokerProcess) -> None:
    topic = "compat-confluent-idempotent"
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    records = make_records("confluent-idempotent")

    config = {"enable.idempotence": True, "acks": "all", "max.in.flight.requests.per.connection": 5}
    acknowledged = produce_all(broker.bootstrap, topic, records, config)
    consumed = consume_assigned(broker.bootstrap, topic, len(records))

    check_round_trip(records, consumed, acknowledged)


def test_round_trip_acks_0(broker: BrokerProcess) -> None:
    # acks=0 gets no response, so delivery reports carry no offsets: records are matched by order.
    topic = "compat-confluent-acks0"
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    records = make_records("confluent-acks0")

    produce_all(broker.bootstrap, topic, records, {"acks": "0"})
    consumed = consume_assigned(broker.bootstrap, topic, len(records))

    check_round_trip(records, consumed, acknowledged=None)


def test_fetch_from_inside_a_batch(broker: BrokerProcess) -> None:
    # Fetch returns whole batches; the client must drop the records before the offset it asked for.
    topic = "compat-confluent-mid-batch"
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    records = make_records("confluent-mid-batch", count=3_000)
    acknowledged = produce_all(broker.bootstrap, topic, records, {"linger.ms": 50, "compression.type": "lz4"})

    start_offsets = {0: 333, 1: 501, 2: 999}
    expected = [r for r in records if acknowledged[r.index][1] >= start_offsets[r.partition]]
    consumed = consume_assigned(broker.bootstrap, topic, len(expected), start_offsets=start_offsets)

    first_offsets = {p: min(r.offset for r in consumed if r.partition == p) for p in start_offsets}
    assert first_offsets == start_offsets
    expected_at = {acknowledged[r.index]: r for r in expected}
    assert len(consumed) == len(expected)
    for got in consumed:
        want = expected_at[(got.partition, got.offset)]
        assert (got.key, got.value, got.headers, got.timestamp_ms) == (
            want.key,
            want.value,
            want.headers,
            want.timestamp_ms,
        )


def test_consumer_group_subscribe_and_commit(broker: BrokerProcess) -> None:
    topic = "compat-confluent-group"
    group = "compat-confluent-group"
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    records = make_records("confluent-group", count=3_000)
    acknowledged = produce_all(broker.bootstrap, topic, records, {})

    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
        }
    )
    try:
        consumer.subscribe([topic])
        consumed = drain(consumer, len(records), PARTITIONS)
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    check_round_trip(records, consumed, acknowledged)

    # A new member of the group sees the committed positions: the end of each partition.
    end_offsets = {p: sum(1 for r in records if r.partition == p) for p in range(PARTITIONS)}
    reader = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        committed = reader.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=20)
    finally:
        reader.close()
    assert {tp.partition: tp.offset for tp in committed} == end_offsets


def test_watermarks_and_offsets_for_times(broker: BrokerProcess) -> None:
    # ListOffsets: earliest, latest, and by timestamp (the first offset whose timestamp is >= the target).
    topic = "compat-confluent-list-offsets"
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    base_ms = int(time.time() * 1000) - 3_600_000
    records = [
        SentRecord(i, i % PARTITIONS, f"k{i}".encode(), f"v{i}".encode(), (), base_ms + 10 * i) for i in range(3_000)
    ]
    acknowledged = produce_all(broker.bootstrap, topic, records, {"linger.ms": 20})

    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "compat-list-offsets"})
    try:
        for partition in range(PARTITIONS):
            in_partition = [r for r in records if r.partition == partition]
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=20)
            assert (low, high) == (0, len(in_partition))

            targets = [r.timestamp_ms for r in in_partition[::397]] + [in_partition[5].timestamp_ms - 1]
            for target in targets:  # one per request: the client merges repeats of a partition
                (result,) = consumer.offsets_for_times([TopicPartition(topic, partition, target)], timeout=20)
                first = next(r for r in in_partition if r.timestamp_ms >= target)
                assert result.offset == acknowledged[first.index][1], f"partition {partition}, timestamp {target}"

            after_last = in_partition[-1].timestamp_ms + 1
            (past_end,) = consumer.offsets_for_times([TopicPartition(topic, partition, after_last)], timeout=20)
            assert past_end.offset in (-1, len(in_partition)), "no record is that late: end offset or -1 expected"
    finally:
        consumer.close()
