"""Shared helpers for the shadow-link integration tests: produce, read logs as raw batches, compare clusters.

Everything here talks to real brokers over the Kafka protocol (raw requests through ``RawConnection``,
or confluent-kafka / kafka-python clients). Nothing sleeps to synchronise: waits poll with deadlines.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from harness import BrokerProcess, wait_until
from kafka.protocol.consumer import FetchRequest
from link_api import link_status
from rawclient import RawConnection

from umbra.records.batch import PARTITION_LEADER_EPOCH_OFFSET, iter_batch_headers

FETCH = 1
METADATA = 3
FETCH_VERSION = 12
MAX_FETCH_BYTES = 4 << 20


# ---------------------------------------------------------------------------------------------
# Producing


def produce(bootstrap: str, topic: str, records: Iterable[Mapping[str, Any]], **config: Any) -> list[tuple[int, int]]:
    """Produce ``records`` (dicts of produce() keyword arguments) and flush; return (partition, offset) of each,
    in the order of ``records``.

    Fails the test if any record is not acknowledged.
    """
    conf = {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 20, "enable.idempotence": True}
    conf.update(config)
    producer = Producer(conf)
    delivered: list[tuple[int, int]] = []
    errors: list[str] = []

    def on_delivery(index: int) -> Any:
        def record_delivery(err: Any, message: Any) -> None:
            if err is not None:
                errors.append(str(err))
            else:
                delivered[index] = (message.partition(), message.offset())
        return record_delivery

    for record in records:
        delivered.append((-1, -1))
        callback = on_delivery(len(delivered) - 1)
        while True:
            try:
                producer.produce(topic, on_delivery=callback, **record)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    remaining = producer.flush(30)
    assert remaining == 0 and not errors, f"produce to {topic}: {remaining} undelivered, errors {errors[:5]}"
    assert (-1, -1) not in delivered
    return delivered


# ---------------------------------------------------------------------------------------------
# Reading a partition as raw batches


@dataclass
class PartitionImage:
    """A partition as seen through Fetch: its offsets and its batches, leader epoch masked."""

    log_start_offset: int
    high_watermark: int
    batches: list[bytes]
    base_offsets: list[int]
    next_offsets: list[int]
    record_counts: list[int]
    producer_ids: list[int]
    compressions: list[int]

    @property
    def record_count(self) -> int:
        return sum(self.record_counts)

    def summary(self) -> str:
        return (f"start={self.log_start_offset} hw={self.high_watermark} batches={len(self.batches)} "
                f"first={self.base_offsets[:3]} last={self.next_offsets[-3:]}")


def _fetch_request(topic: str, partition: int, offset: int) -> dict[str, Any]:
    return dict(replica_id=-1, max_wait_ms=0, min_bytes=0, max_bytes=MAX_FETCH_BYTES, isolation_level=0,
                session_id=0, session_epoch=-1, rack_id="", forgotten_topics_data=[],
                topics=[FetchRequest.FetchTopic(topic=topic, partitions=[
                    FetchRequest.FetchTopic.FetchPartition(partition=partition, current_leader_epoch=-1,
                                                           fetch_offset=offset, last_fetched_epoch=-1,
                                                           log_start_offset=-1,
                                                           partition_max_bytes=MAX_FETCH_BYTES)])])


def _fetch_partition(conn: RawConnection, topic: str, partition: int, offset: int) -> Any:
    response = conn.request(FETCH, FETCH_VERSION, **_fetch_request(topic, partition, offset))
    assert response.error_code == 0, response
    return response.responses[0].partitions[0]


def read_partition(broker: BrokerProcess, topic: str, partition: int, log_start_offset: int,
                   conn: RawConnection | None = None) -> PartitionImage:
    """Every batch of ``topic``-``partition`` from ``log_start_offset`` up to the high watermark, via Fetch v12.

    The partition leader epoch (bytes 12..16 of each batch) is zeroed; every other byte is as served.
    The high watermark and log start offset are those of the first Fetch response; the walk then reads
    until it reaches that high watermark.
    """
    own = conn is None
    conn = conn or RawConnection(broker.host, broker.port)
    try:
        first = _fetch_partition(conn, topic, partition, log_start_offset)
        assert first.error_code == 0, f"{broker.name} {topic}-{partition} fetch at {log_start_offset}: {first}"
        hw, fetched_start = first.high_watermark, first.log_start_offset
        image = PartitionImage(fetched_start, hw, [], [], [], [], [], [])
        offset, response = log_start_offset, first
        while offset < hw:
            if response is None:
                response = _fetch_partition(conn, topic, partition, offset)
                assert response.error_code == 0, f"{broker.name} {topic}-{partition} fetch at {offset}: {response}"
            records = memoryview(response.records or b"")
            progressed = False
            for header in iter_batch_headers(records):
                if header.base_offset >= hw:
                    break
                batch = bytearray(records[header.position:header.end_position])
                batch[PARTITION_LEADER_EPOCH_OFFSET:PARTITION_LEADER_EPOCH_OFFSET + 4] = b"\0\0\0\0"
                image.batches.append(bytes(batch))
                image.base_offsets.append(header.base_offset)
                image.next_offsets.append(header.next_offset)
                image.record_counts.append(header.record_count)
                image.producer_ids.append(header.producer_id)
                image.compressions.append(header.compression)
                offset = header.next_offset
                progressed = True
            assert progressed, f"{broker.name} {topic}-{partition}: no complete batch at offset {offset} < hw {hw}"
            response = None
        return image
    finally:
        if own:
            conn.close()


def watermarks(bootstrap: str, topics: Mapping[str, int]) -> dict[tuple[str, int], tuple[int, int]]:
    """{(topic, partition): (log start offset, high watermark)} via ListOffsets (confluent-kafka)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "shadow-test-watermarks"})
    try:
        return {(topic, p): consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                for topic, count in topics.items() for p in range(count)}
    finally:
        consumer.close()


def read_images(broker: BrokerProcess, topics: Mapping[str, int]) -> dict[tuple[str, int], PartitionImage]:
    marks = watermarks(broker.bootstrap, topics)
    with RawConnection(broker.host, broker.port) as conn:
        return {tp: read_partition(broker, tp[0], tp[1], low, conn) for tp, (low, _) in marks.items()}


def assert_logs_equal(source: BrokerProcess, shadow: BrokerProcess, topics: Mapping[str, int],
                      require_data: bool = True) -> dict[tuple[str, int], PartitionImage]:
    """Every partition's log start, high watermark and batch sequence (epoch masked) equal on both sides.

    Also checks each side's batches are contiguous from the log start (no gap, no duplicate) unless the
    source itself has a gap. Returns the source's images.
    """
    source_marks = watermarks(source.bootstrap, topics)
    shadow_marks = watermarks(shadow.bootstrap, topics)
    assert shadow_marks == source_marks, f"(log start, high watermark) differ:\nsource {source_marks}\nshadow {shadow_marks}"
    source_images = read_images(source, topics)
    shadow_images = read_images(shadow, topics)
    for tp, src in source_images.items():
        dst = shadow_images[tp]
        assert (dst.log_start_offset, dst.high_watermark) == (src.log_start_offset, src.high_watermark) \
            == source_marks[tp], f"{tp}: fetch says shadow {dst.summary()} source {src.summary()}"
        if require_data:
            assert src.batches, f"{tp}: the source has no data; the test is not testing anything"
        assert dst.base_offsets == src.base_offsets, f"{tp}: batch offsets differ: {dst.summary()} vs {src.summary()}"
        for i, (a, b) in enumerate(zip(src.batches, dst.batches, strict=True)):
            assert a == b, f"{tp}: batch {i} at offset {src.base_offsets[i]} differs ({len(a)} vs {len(b)} bytes)"
        assert_contiguous(tp, dst)
    return source_images


def assert_contiguous(tp: Any, image: PartitionImage) -> None:
    """Batches follow each other with no gap and no overlap, the first contains the log start offset and the
    last ends at the high watermark."""
    if not image.batches:
        assert image.high_watermark == image.log_start_offset, f"{tp}: no batches but {image.summary()}"
        return
    assert image.base_offsets[0] <= image.log_start_offset < image.next_offsets[0], f"{tp}: {image.summary()}"
    for i in range(1, len(image.batches)):
        assert image.base_offsets[i] == image.next_offsets[i - 1], \
            f"{tp}: batch {i} starts at {image.base_offsets[i]}, the previous ended at {image.next_offsets[i - 1]}"
    assert image.next_offsets[-1] == image.high_watermark, f"{tp}: {image.summary()}"


# ---------------------------------------------------------------------------------------------
# Status


def partition_status(shadow: BrokerProcess, name: str = "dr") -> dict[tuple[str, int], dict[str, Any]]:
    return {(p["topic"], p["partition"]): p for p in link_status(shadow, name)["partitions"]}


def status_text(shadow: BrokerProcess, name: str = "dr") -> str:
    return json.dumps(link_status(shadow, name))[:3000]


def wait_in_sync(source: BrokerProcess, shadow: BrokerProcess, topics: Mapping[str, int], timeout: float = 30,
                 name: str = "dr") -> dict[str, Any]:
    """Wait until status shows every partition of ``topics`` at lag 0 with the source's *current* high watermark.

    ``wait_caught_up`` alone trusts the status's source high watermark, which comes from the last Fetch
    response: right after a produce it can still be the previous one, and show lag 0 for a moment while
    the newest records are on their way. This also asks the source itself (ListOffsets).
    """
    def in_sync() -> dict[str, Any] | None:
        marks = watermarks(source.bootstrap, topics)
        doc = link_status(shadow, name)
        parts = {(p["topic"], p["partition"]): p for p in doc["partitions"]}
        for tp, (_, hw) in marks.items():
            p = parts.get(tp)
            if p is None or p["lag"] != 0 or p["shadow_high_watermark"] != hw or p["source_high_watermark"] != hw:
                return None
        return doc

    return wait_until(in_sync, timeout=timeout, interval=0.1,
                      message=lambda: f"link {name} in sync with {dict(topics)}: {status_text(shadow, name)}")


def wait_link_state(shadow: BrokerProcess, predicate: Any, what: str, timeout: float = 20, name: str = "dr") -> Any:
    """Poll the link's status document until ``predicate(doc)`` is truthy; return its value."""
    return wait_until(lambda: predicate(link_status(shadow, name)), timeout=timeout, interval=0.1,
                      message=lambda: f"{what}: {status_text(shadow, name)}")


# ---------------------------------------------------------------------------------------------
# Processes


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # Fields after the command: state is fields[0]; utime and stime are stat fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def metadata_ok(broker: BrokerProcess) -> bool:
    """A Metadata request to ``broker`` answers with itself as a broker."""
    with RawConnection(broker.host, broker.port, timeout=5) as conn:
        response = conn.request(METADATA, 12, topics=None, allow_auto_topic_creation=False,
                                include_topic_authorized_operations=False)
    return any(b.port == broker.port for b in response.brokers)


# ---------------------------------------------------------------------------------------------
# Records as clients see them

RecordTuple = tuple[str, int, int, Any, Any, tuple[tuple[str, Any], ...], int, int]


def read_records_kafka_python(bootstrap: str, topics: Mapping[str, int],
                              timeout: float = 30) -> list[RecordTuple]:
    """(topic, partition, offset, key, value, headers, timestamp, timestamp type) of every record from each
    partition's log start to its high watermark, read by kafka-python."""
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTopicPartition

    marks = watermarks(bootstrap, topics)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             auto_offset_reset="earliest", fetch_max_wait_ms=100)
    try:
        partitions = [KTopicPartition(t, p) for (t, p) in marks]
        consumer.assign(partitions)
        for tp in partitions:
            consumer.seek(tp, marks[(tp.topic, tp.partition)][0])
        out: list[RecordTuple] = []

        def done() -> bool:
            for batch in consumer.poll(timeout_ms=200, max_records=10000).values():
                for m in batch:
                    out.append((m.topic, m.partition, m.offset, m.key, m.value,
                                tuple((k, v) for k, v in m.headers), m.timestamp, m.timestamp_type))
            return all(consumer.position(tp) >= marks[(tp.topic, tp.partition)][1] for tp in partitions)

        wait_until(done, timeout=timeout, interval=0, message=f"kafka-python reading {dict(topics)} at {bootstrap}")
        return sorted(out, key=lambda r: (r[0], r[1], r[2]))
    finally:
        consumer.close()


def read_records_confluent(bootstrap: str, topics: Mapping[str, int], timeout: float = 30) -> list[RecordTuple]:
    """The same tuples as :func:`read_records_kafka_python`, read by confluent-kafka (which reads snappy)."""
    marks = watermarks(bootstrap, topics)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "shadow-test-reader",
                         "enable.auto.commit": False, "fetch.wait.max.ms": 100})
    try:
        consumer.assign([TopicPartition(t, p, low) for (t, p), (low, _) in marks.items()])
        out: list[RecordTuple] = []
        next_offset = {tp: low for tp, (low, _) in marks.items()}

        def done() -> bool:
            for m in consumer.consume(num_messages=10000, timeout=0.2):
                assert m.error() is None, m.error()
                ts_type, ts = m.timestamp()
                out.append((m.topic(), m.partition(), m.offset(), m.key(), m.value(),
                            tuple(m.headers() or ()), ts, ts_type - 1))  # confluent: 1 CreateTime, 2 LogAppend
                next_offset[(m.topic(), m.partition())] = m.offset() + 1
            return all(next_offset[tp] >= hw for tp, (_, hw) in marks.items())

        wait_until(done, timeout=timeout, interval=0, message=f"confluent-kafka reading {dict(topics)} at {bootstrap}")
        return sorted(out, key=lambda r: (r[0], r[1], r[2]))
    finally:
        consumer.close()


def delete_records(bootstrap: str, offsets: Mapping[tuple[str, int], int]) -> None:
    """DeleteRecords through confluent-kafka's AdminClient; checks each new low watermark."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.delete_records([TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                                   request_timeout=20, operation_timeout=20)
    for tp, future in futures.items():
        result = future.result(timeout=20)
        assert result.low_watermark == offsets[(tp.topic, tp.partition)], (tp, result)
