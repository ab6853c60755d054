"""``__consumer_offsets`` as Kafka's tools see it, on a real broker: every record decodes with Kafka's key and value
schemas (decoders written here from Kafka's message definitions, independent of umbra's), a data dir in umbra's
former format is migrated on start-up with nothing lost, and ListOffsets v0 / OffsetForLeaderEpoch v0-1 (asked
for by older tools such as Burrow) are answered."""

from __future__ import annotations

import json
import re
import struct
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")

from harness import BrokerProcess, create_topic, http_get, wait_until  # noqa: E402
from rawclient import RawConnection  # noqa: E402

from umbra.protocol.codec import build_request  # noqa: E402

OFFSETS_TOPIC = "__consumer_offsets"
TOPIC = "format-topic"
PARTITIONS = 3
RECORDS_PER_PARTITION = 20


# --- Kafka's schemas (group-coordinator OffsetCommitKey/Value, GroupMetadataKey/Value), versions 0-3 ---------

class Cursor:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, fmt: str) -> Any:
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return value

    def string(self) -> str | None:
        length = self.take(">h")
        if length < 0:
            return None
        self.pos += length
        return self.data[self.pos - length : self.pos].decode()

    def blob(self) -> bytes:
        length = self.take(">i")
        self.pos += length
        return self.data[self.pos - length : self.pos]

    def done(self) -> bool:
        return self.pos == len(self.data)


@dataclass(frozen=True)
class KafkaOffset:
    group: str
    topic: str
    partition: int
    offset: int | None  # None: a tombstone
    metadata: str | None = None


@dataclass(frozen=True)
class KafkaGroup:
    group: str
    protocol_type: str | None
    generation: int | None  # None: a tombstone
    protocol: str | None = None
    members: tuple[tuple[str, str], ...] = ()  # (member id, client id)


def decode_record(key: bytes, value: bytes | None) -> KafkaOffset | KafkaGroup:
    """One record, as Kafka's GroupMetadataManager reads it; raises on anything that is not Kafka's format."""
    k = Cursor(key)
    version = k.take(">h")
    if version in (0, 1):
        group, topic, partition = k.string(), k.string(), k.take(">i")
        assert k.done() and group is not None and topic is not None
        if value is None:
            return KafkaOffset(group, topic, partition, None)
        v = Cursor(value)
        value_version = v.take(">h")
        assert value_version in (0, 1, 2, 3), value_version
        offset = v.take(">q")
        if value_version == 3:
            v.take(">i")  # leader epoch
        metadata = v.string()
        v.take(">q")  # commit timestamp
        if value_version == 1:
            v.take(">q")  # expire timestamp
        assert v.done()
        return KafkaOffset(group, topic, partition, offset, metadata)
    assert version == 2, f"unknown key version {version}"
    group = k.string()
    assert k.done() and group is not None
    if value is None:
        return KafkaGroup(group, None, None)
    v = Cursor(value)
    value_version = v.take(">h")
    assert value_version in (0, 1, 2, 3), value_version
    protocol_type, generation, protocol, _leader = v.string(), v.take(">i"), v.string(), v.string()
    if value_version >= 2:
        v.take(">q")  # current state timestamp
    members = []
    for _ in range(v.take(">i")):
        member_id = v.string()
        if value_version >= 3:
            v.string()  # group instance id
        client_id, _host = v.string(), v.string()
        if value_version >= 1:
            v.take(">i")  # rebalance timeout
        v.take(">i")  # session timeout
        v.blob()
        v.blob()
        members.append((str(member_id), str(client_id)))
    assert v.done()
    return KafkaGroup(group, protocol_type, generation, protocol, tuple(members))


def read_offsets_topic(bootstrap: str) -> tuple[int, list[KafkaOffset | KafkaGroup]]:
    """(log start offset, every record of __consumer_offsets decoded) read with a real consumer."""
    consumer = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4()}",
                                         "enable.auto.commit": False, "enable.partition.eof": True})
    try:
        low, high = consumer.get_watermark_offsets(confluent_kafka.TopicPartition(OFFSETS_TOPIC, 0), timeout=10)
        consumer.assign([confluent_kafka.TopicPartition(OFFSETS_TOPIC, 0, confluent_kafka.OFFSET_BEGINNING)])
        decoded: list[KafkaOffset | KafkaGroup] = []
        position = low
        while position < high:
            message = consumer.poll(5)
            assert message is not None, f"nothing read at offset {position} of {high}"
            if message.error() is not None:
                assert message.error().code() == confluent_kafka.KafkaError._PARTITION_EOF, message.error()
                position = max(position, message.offset())
                continue
            decoded.append(decode_record(message.key(), message.value()))
            position = message.offset() + 1
        return low, decoded
    finally:
        consumer.close()


def latest_offsets(records: list[KafkaOffset | KafkaGroup]) -> dict[tuple[str, str, int], int | None]:
    state: dict[tuple[str, str, int], int | None] = {}
    for record in records:
        if isinstance(record, KafkaOffset):
            state[(record.group, record.topic, record.partition)] = record.offset
    return state


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    # Small offsets segments and a busy cleaner, so that __consumer_offsets is compacted within a test.
    process = BrokerProcess(tmp_path_factory.mktemp("offsets-format"), name="broker",
                            config={"group_initial_rebalance_delay_ms": 0, "log_cleaner_interval_ms": 100,
                                    "offsets_topic_segment_bytes": 1024})
    process.start()
    try:
        create_topic(process.bootstrap, TOPIC, partitions=PARTITIONS)
        producer = confluent_kafka.Producer({"bootstrap.servers": process.bootstrap})
        for partition in range(PARTITIONS):
            for i in range(RECORDS_PER_PARTITION):
                producer.produce(TOPIC, f"v{i}".encode(), partition=partition)
        assert producer.flush(30) == 0
        yield process
    finally:
        process.stop()


def test_every_commit_decodes_with_kafkas_schemas(broker: BrokerProcess) -> None:
    # A subscribed consumer group (group metadata and offsets) and commit-only groups.
    group = f"subscribed-{uuid.uuid4().hex[:6]}"
    consumer = confluent_kafka.Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group,
                                         "client.id": "format-client", "enable.auto.commit": False,
                                         "auto.offset.reset": "earliest"})
    try:
        consumer.subscribe([TOPIC])
        consumed = 0
        while consumed < 5:
            message = consumer.poll(10)
            assert message is not None, "nothing consumed"
            if message.error() is None:
                consumed += 1
        consumer.commit(asynchronous=False)
        committed = {(group, tp.topic, tp.partition): tp.offset
                     for tp in consumer.committed(consumer.assignment(), timeout=10) if tp.offset >= 0}
        # While the member is in the group, the group's newest record (never cleaned) names it.
        _, records = read_offsets_topic(broker.bootstrap)
        (stable,) = [r for r in records if isinstance(r, KafkaGroup) and r.group == group][-1:]
        assert stable.protocol_type == "consumer" and stable.protocol and stable.generation
        assert [client for _, client in stable.members] == ["format-client"]
    finally:
        consumer.close()
    assert committed
    expected = dict(committed)
    for n in range(3):
        solo = f"solo-{n}"
        committer = confluent_kafka.Consumer({"bootstrap.servers": broker.bootstrap, "group.id": solo,
                                              "enable.auto.commit": False})
        try:
            offsets = [confluent_kafka.TopicPartition(TOPIC, p, 3 + n + p, f"meta-{n}") for p in range(PARTITIONS)]
            committer.commit(offsets=offsets, asynchronous=False)
        finally:
            committer.close()
        expected.update({(solo, TOPIC, p): 3 + n + p for p in range(PARTITIONS)})

    _, records = read_offsets_topic(broker.bootstrap)
    state = latest_offsets(records)
    assert {k: state.get(k) for k in expected} == expected
    # confluent-kafka sends the metadata string with its C terminator: the bytes are kept as sent.
    assert any(isinstance(r, KafkaOffset) and r.group == "solo-1" and (r.metadata or "").startswith("meta-1")
               for r in records)
    (emptied,) = [r for r in records if isinstance(r, KafkaGroup) and r.group == group][-1:]
    assert emptied.generation and emptied.protocol_type == "consumer" and emptied.members == ()  # left: Empty


def test_deleted_offsets_and_groups_are_tombstones(broker: BrokerProcess) -> None:
    from confluent_kafka.admin import AdminClient

    group = f"doomed-{uuid.uuid4().hex[:6]}"
    committer = confluent_kafka.Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group,
                                          "enable.auto.commit": False})
    try:
        committer.commit(offsets=[confluent_kafka.TopicPartition(TOPIC, 0, 7)], asynchronous=False)
    finally:
        committer.close()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.delete_consumer_groups([group], request_timeout=15)[group].result(timeout=30)
    _, records = read_offsets_topic(broker.bootstrap)
    mine = [r for r in records if r.group == group]
    assert KafkaOffset(group, TOPIC, 0, 7, "") in mine
    assert mine[-2:] == [KafkaOffset(group, TOPIC, 0, None), KafkaGroup(group, None, None)]


def raw_call(broker: BrokerProcess, api_key: int, version: int, **fields: Any) -> Any:
    host, _, port = broker.bootstrap.rpartition(":")
    with RawConnection(host, int(port)) as connection:
        request = build_request(api_key, version, fields)
        request.with_header(correlation_id=1, client_id="format-test")
        connection.sock.sendall(bytes(request.encode(header=True, framed=True)))
        _, response = connection.receive(api_key, version)
    return response


def test_list_offsets_v0_and_offset_for_leader_epoch_v0_v1(broker: BrokerProcess) -> None:
    partitions = [{"partition_index": 0, "timestamp": -1, "max_num_offsets": 5},
                  {"partition_index": 1, "timestamp": -2, "max_num_offsets": 1},
                  {"partition_index": 2, "timestamp": -1, "max_num_offsets": 1}]
    response = raw_call(broker, 2, 0, replica_id=-1, topics=[
        {"name": TOPIC, "partitions": partitions}, {"name": "no-such-topic", "partitions": partitions[:1]}])
    by_partition = {p.partition_index: p for p in response.topics[0].partitions}
    assert [p.error_code for p in by_partition.values()] == [0, 0, 0]
    assert by_partition[0].old_style_offsets == [RECORDS_PER_PARTITION, 0]  # newest first
    assert by_partition[1].old_style_offsets == [0]
    assert by_partition[2].old_style_offsets == [RECORDS_PER_PARTITION]
    assert response.topics[1].partitions[0].error_code == 3  # UNKNOWN_TOPIC_OR_PARTITION
    assert response.topics[1].partitions[0].old_style_offsets == []
    newer = raw_call(broker, 2, 1, replica_id=-1, topics=[{"name": "no-such-topic", "partitions": [
        {"partition_index": 0, "timestamp": -1}]}, {"name": TOPIC, "partitions": [{"partition_index": 0,
                                                                                   "timestamp": -1}]}])
    assert newer.topics[0].partitions[0].error_code == 3 and newer.topics[1].partitions[0].offset == 20

    for version in (0, 1):
        response = raw_call(broker, 23, version, topics=[
            {"topic": TOPIC, "partitions": [{"partition": 0, "leader_epoch": 0}]},
            {"topic": "no-such-topic", "partitions": [{"partition": 0, "leader_epoch": 0}]}])
        (answer,) = response.topics[0].partitions
        assert (answer.error_code, answer.end_offset) == (0, RECORDS_PER_PARTITION)
        if version == 1:
            assert answer.leader_epoch == 0
        assert response.topics[1].partitions[0].error_code == 3


def offsets_cleaner_passes(broker: BrokerProcess) -> float:
    status, body = http_get(f"{broker.admin_url}/metrics")
    assert status == 200
    match = re.search(r'^umbra_log_cleaner_passes_total\{topic="__consumer_offsets"\} (\S+)$', body.decode(),
                      re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_compaction_keeps_kafkas_format_and_the_latest_commit(broker: BrokerProcess) -> None:
    """Runs last in this module: it restarts the broker."""
    group = f"compacted-{uuid.uuid4().hex[:6]}"
    committer = confluent_kafka.Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group,
                                          "enable.auto.commit": False})
    last = 0
    try:
        for last in range(1, 80):  # enough records to roll 1 KiB segments, so the cleaner has work
            committer.commit(offsets=[confluent_kafka.TopicPartition(TOPIC, 1, last)], asynchronous=False)

        def compacted() -> bool:
            committer.commit(offsets=[confluent_kafka.TopicPartition(TOPIC, 1, last)], asynchronous=False)
            _, records = read_offsets_topic(broker.bootstrap)
            return len([r for r in records if isinstance(r, KafkaOffset) and r.group == group]) < last

        wait_until(compacted, timeout=60, interval=0.2, message="the cleaner to compact __consumer_offsets")
        assert offsets_cleaner_passes(broker) >= 1
    finally:
        committer.close()
    broker.stop()
    broker.start()
    _, records = read_offsets_topic(broker.bootstrap)  # every record left still decodes as Kafka's
    mine = [r for r in records if isinstance(r, KafkaOffset) and r.group == group]
    assert mine[-1].offset == last and len(mine) < last  # older commits of the key were cleaned
    reader = confluent_kafka.Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group,
                                       "enable.auto.commit": False})
    try:
        (stored,) = reader.committed([confluent_kafka.TopicPartition(TOPIC, 1)], timeout=30)
        assert stored.offset == last
    finally:
        reader.close()


# --- migration of a data dir in umbra's former format ------------------------------------------------

def legacy_str16(text: str) -> bytes:
    return struct.pack(">H", len(text.encode())) + text.encode()


def legacy_offset_record(group: str, topic: str, partition: int, offset: int) -> tuple[bytes, bytes]:
    """A committed offset as umbra wrote it before Kafka's format: kind 1, version 1, JSON value."""
    key = bytes((1, 1)) + legacy_str16(group) + legacy_str16(topic) + struct.pack(">i", partition)
    return key, json.dumps({"v": 1, "offset": offset, "leader_epoch": 0, "metadata": "",
                            "commit_timestamp_ms": 1_700_000_000_000}).encode()


def legacy_group_record(group: str, generation: int) -> tuple[bytes, bytes]:
    return bytes((2, 1)) + legacy_str16(group), json.dumps(
        {"v": 1, "protocol_type": "consumer", "generation_id": generation, "protocol_name": "range",
         "leader_id": "m-1", "timestamp_ms": 1_700_000_000_000,
         "members": [{"member_id": "m-1", "group_instance_id": None, "client_id": "c", "client_host": "/h",
                      "session_timeout_ms": 10000, "rebalance_timeout_ms": 30000, "subscription": "",
                      "assignment": ""}]}).encode()


def write_legacy_records(data_dir: Path, records: list[tuple[bytes, bytes]]) -> None:
    from umbra.records.records import build_batch
    from umbra.storage.config import LogConfig
    from umbra.storage.log import Log

    log = Log.open(data_dir / f"{OFFSETS_TOPIC}-0", OFFSETS_TOPIC, 0, LogConfig(retention_ms=-1))
    try:
        for chunk in range(0, len(records), 10):  # several batches, as commits came
            batch = [(key, value, (), 1_700_000_000_000) for key, value in records[chunk : chunk + 10]]
            log.append_as_leader(build_batch(batch), leader_epoch=0, now_ms=1_700_000_000_000)
    finally:
        log.close()


def test_a_data_dir_in_the_former_format_is_migrated(tmp_path: Path) -> None:
    broker = BrokerProcess(tmp_path / "legacy", name="legacy")
    broker.start()  # creates the data dir and an empty __consumer_offsets
    try:
        broker.stop()
        legacy: list[tuple[bytes, bytes]] = []
        for round_ in range(3):  # older commits first: the newest of each key is the state
            legacy += [legacy_offset_record(f"old-{g}", "t", p, 10 * round_ + p) for g in range(4) for p in range(2)]
        legacy += [legacy_group_record("old-0", 5)]
        write_legacy_records(broker.data_dir, legacy)

        broker.start()
        assert "migrated 8 offset records and 1 groups of __consumer_offsets to Kafka's format" in broker.log_text()
        low, records = read_offsets_topic(broker.bootstrap)  # every record readable decodes as Kafka's
        assert low >= len(legacy)
        assert latest_offsets(records) == {(f"old-{g}", "t", p): 20 + p for g in range(4) for p in range(2)}
        assert any(isinstance(r, KafkaGroup) and r.group == "old-0" and r.generation == 5 for r in records)

        broker.stop()  # the state survives another restart, with nothing left to migrate
        broker.start()
        assert broker.log_text().count("migrated 8 offset records") == 1
        reader = confluent_kafka.Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "old-3",
                                           "enable.auto.commit": False})
        try:
            tps = [confluent_kafka.TopicPartition("t", p) for p in range(2)]
            stored = wait_until(lambda: reader.committed(tps, timeout=10), timeout=30, message="committed offsets",
                                retry_on=(confluent_kafka.KafkaException,))
            assert [tp.offset for tp in stored] == [20, 21]
        finally:
            reader.close()
    finally:
        broker.stop()
