"""Per-record Produce errors (KIP-467) on a real broker: a batch with keyless records for a compacted topic is
refused whole with INVALID_RECORD, and Produce v8+ names each keyless record by its batch index. confluent-kafka
reports the keyless records as invalid and the others as refused because of them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")

from harness import BrokerProcess, create_topic, stop_all  # noqa: E402
from rawclient import RawConnection  # noqa: E402

from umbra.protocol.codec import build_request  # noqa: E402
from umbra.records.records import build_batch  # noqa: E402

TOPIC = "keyed-table"
INVALID_RECORD = 87
KEYLESS = "Compacted topic cannot accept message without key in topic partition keyed-table-0"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    broker = BrokerProcess(tmp_path_factory.mktemp("record-errors") / "broker", name="record-errors")
    try:
        broker.start()
        create_topic(broker.bootstrap, TOPIC, partitions=1, config={"cleanup.policy": "compact"})
        yield broker
    finally:
        stop_all([broker])


def high_watermark(broker: BrokerProcess) -> int:
    consumer = confluent_kafka.Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "watermarks"})
    try:
        _, high = consumer.get_watermark_offsets(confluent_kafka.TopicPartition(TOPIC, 0), timeout=10)
        return int(high)
    finally:
        consumer.close()


def produce(broker: BrokerProcess, keys: list[bytes | None]) -> list[Any]:
    """Send ``keys`` as one batch (a long linger, one flush); each record's delivery error, None if delivered."""
    producer = confluent_kafka.Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5000, "retries": 0,
                                         "batch.num.messages": len(keys), "enable.idempotence": False})
    outcomes: dict[int, Any] = {}
    for i, key in enumerate(keys):
        producer.produce(TOPIC, value=f"value-{i}".encode(), key=key, partition=0,
                         on_delivery=lambda err, _msg, i=i: outcomes.__setitem__(i, err))
    assert producer.flush(20) == 0
    return [outcomes[i] for i in range(len(keys))]


def test_confluent_kafka_sees_the_keyless_records_named_and_nothing_appended(broker: BrokerProcess) -> None:
    before = high_watermark(broker)
    outcomes = produce(broker, [b"a", None, b"b", None])
    # librdkafka gives the records the broker names INVALID_RECORD, and the keyed ones, which it does not name, its
    # "different record" error (refused because of the others): only record_errors' indexes tell them apart.
    invalid, different = confluent_kafka.KafkaError.INVALID_RECORD, confluent_kafka.KafkaError._INVALID_DIFFERENT_RECORD
    assert [error.code() if error else None for error in outcomes] == [different, invalid, different, invalid]
    assert high_watermark(broker) == before

    assert produce(broker, [b"a", b"b"]) == [None, None]  # keyed records alone are appended
    assert high_watermark(broker) == before + 2


def raw_produce(broker: BrokerProcess, version: int, keys: list[bytes | None]) -> Any:
    records = build_batch([(key, b"v", [], 1000 + i) for i, key in enumerate(keys)])
    host, _, port = broker.bootstrap.rpartition(":")
    request = build_request(0, version, {"transactional_id": None, "acks": -1, "timeout_ms": 10000, "topic_data": [
        {"name": TOPIC, "partition_data": [{"index": 0, "records": records}]}]})
    request.with_header(correlation_id=7, client_id="record-errors")
    with RawConnection(host, int(port)) as connection:
        connection.sock.sendall(bytes(request.encode(header=True, framed=True)))
        correlation_id, response = connection.receive(0, version)
    assert correlation_id == 7
    [topic] = response.responses
    [partition] = topic.partition_responses
    return partition


@pytest.mark.parametrize("version", [8, 9, 11])
def test_produce_v8_plus_names_each_keyless_record(broker: BrokerProcess, version: int) -> None:
    before = high_watermark(broker)
    partition = raw_produce(broker, version, [b"k0", None, b"k2", None, None])
    assert partition.error_code == INVALID_RECORD
    assert [(e.batch_index, e.batch_index_error_message) for e in partition.record_errors] == [
        (1, KEYLESS), (3, KEYLESS), (4, KEYLESS)]
    assert partition.error_message.startswith("One or more records have been rejected due to 3 record errors")
    assert partition.base_offset == -1
    assert high_watermark(broker) == before


@pytest.mark.parametrize("version", [3, 7])
def test_older_produce_versions_get_the_code_alone(broker: BrokerProcess, version: int) -> None:
    partition = raw_produce(broker, version, [None])
    assert partition.error_code == INVALID_RECORD
    assert not hasattr(partition, "record_errors") or not partition.record_errors
    keyed = raw_produce(broker, version, [b"k"])
    assert keyed.error_code == 0 and keyed.base_offset >= 0
