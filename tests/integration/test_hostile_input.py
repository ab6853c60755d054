"""Memory stays bounded whatever clients send: size prefixes on many connections, decompression bombs, batches
whose CRC is right and whose records are not. Each gets its error; the broker's memory, read from /proc,
stays within the bound each test states; other clients keep being served."""

from __future__ import annotations

import resource
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard
from confluent_kafka import Consumer, Producer, TopicPartition
from harness import BrokerProcess, create_topic, http_get, wait_until
from rawclient import RawConnection

from umbra.records.batch import HEADER_SIZE, iter_batch_headers, write_crc
from umbra.records.records import build_batch

MiB = 1 << 20
POOL = 120 * MiB  # queued_max_request_bytes (at least max_request_bytes, 100 MiB)
PRODUCE, LIST_OFFSETS = 0, 2
CORRUPT_MESSAGE = 2
HOSTILE_CONFIG = {"queued_max_request_bytes": POOL, "max_connections_per_ip": 2000}


def memory(pid: int) -> tuple[int, int]:
    """(resident, peak resident) bytes of process ``pid``."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024


def served(broker: BrokerProcess, topic: str, label: str) -> None:
    """Another client produces and reads back a few records: the broker still serves."""
    start = end_offset(broker, topic)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    for i in range(20):
        producer.produce(topic, value=f"{label}-{i}".encode(), partition=0)
    assert producer.flush(30) == 0, f"{label}: a producer was not served"
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"g-{label}", "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, 0, start)])
        seen: list[bytes] = []
        wait_until(lambda: seen.extend(m.value() for m in consumer.consume(100, 0.2) if m.error() is None)
                   or any(v == f"{label}-19".encode() for v in seen), timeout=30,
                   message=f"{label}: a consumer reading its records")
    finally:
        consumer.close()


@pytest.fixture
def hostile_broker(broker_factory) -> BrokerProcess:  # type: ignore[no-untyped-def]
    broker = broker_factory("broker", config=HOSTILE_CONFIG)
    create_topic(broker.bootstrap, "plain", partitions=1)
    served(broker, "plain", "warm-up")
    return broker


@pytest.fixture
def many_files() -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 2500:
        pytest.skip(f"needs 2,500 open files, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2500), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_thousand_connections_sending_size_prefixes(hostile_broker: BrokerProcess, many_files: None) -> None:
    broker = hostile_broker
    baseline, _ = memory(broker.pid)
    sockets = []
    try:
        for _ in range(1000):  # each declares a 100 MiB request (the largest allowed)
            sock = socket.create_connection((broker.host, broker.port), timeout=10)
            sock.sendall(struct.pack(">i", 100 * MiB))
            sockets.append(sock)
        served(broker, "plain", "prefixes")
        _, peak = memory(broker.pid)
        assert peak - baseline < 48 * MiB, f"1,000 size prefixes cost {(peak - baseline) // MiB} MiB"

        for sock in sockets:  # and then one byte of each request: the first chunk of each needs the pool
            sock.sendall(b"x")
        served(broker, "plain", "first-bytes")
        _, body = http_get(broker.admin_url + "/metrics")
        metrics = body.decode()
        assert "umbra_request_memory_waits" in metrics
        _, peak = memory(broker.pid)
        assert peak - baseline < POOL + 48 * MiB, f"1,000 started requests cost {(peak - baseline) // MiB} MiB"
    finally:
        for sock in sockets:
            sock.close()
    wait_until(lambda: b"umbra_request_memory_bytes 0.0" in http_get(broker.admin_url + "/metrics")[1],
               timeout=30, message="the request memory given back when the connections closed")
    served(broker, "plain", "after")


def test_connection_limits_are_enforced(broker_factory, many_files: None) -> None:  # type: ignore[no-untyped-def]
    broker = broker_factory("broker", config={"max_connections_per_ip": 50, "max_connections": 60})
    create_topic(broker.bootstrap, "plain", partitions=1)
    sockets = [socket.create_connection((broker.host, broker.port), timeout=10) for _ in range(60)]
    try:
        def counts() -> tuple[float, float]:
            lines = dict(line.rsplit(" ", 1) for line in http_get(broker.admin_url + "/metrics")[1].decode()
                         .splitlines() if line.startswith(("umbra_connections ", "umbra_connections_refused ")))
            return float(lines["umbra_connections"]), float(lines["umbra_connections_refused"])

        open_, refused = wait_until(lambda: (c := counts())[0] + c[1] >= 60 and c, timeout=10,
                                    message="every connection admitted or refused")
        assert open_ <= 50 and refused >= 10, (open_, refused)
        closed = 0
        for sock in sockets:  # the refused ones were closed by the broker at once
            sock.settimeout(0.5)
            try:
                closed += sock.recv(1) == b""
            except (TimeoutError, ConnectionResetError) as exc:
                closed += isinstance(exc, ConnectionResetError)
        assert closed == refused, (closed, refused)
    finally:
        for sock in sockets:
            sock.close()
    served(broker, "plain", "under-the-limit")


# -- decompression bombs --------------------------------------------------------------------------------------

def zstd_bomb(decompressed: int = 1 << 30, timestamp: int = 1) -> bytes:
    """A valid-CRC batch of one zstd-compressed 'record' that decompresses to ``decompressed`` bytes."""
    compressor = zstandard.ZstdCompressor(level=19).compressobj()
    zeros = bytes(8 * MiB)
    payload = b"".join(compressor.compress(zeros) for _ in range(decompressed // len(zeros))) + compressor.flush()
    header = bytearray(build_batch([(b"k", b"v", [], timestamp)])[:HEADER_SIZE])
    batch = header + payload
    struct.pack_into(">i", batch, 8, len(batch) - 12)
    struct.pack_into(">h", batch, 21, 4)  # attributes: zstd
    write_crc(batch, 0)
    return bytes(batch)


def produce_raw(broker: BrokerProcess, topic: str, records: bytes) -> int:
    from kafka.protocol.producer import ProduceRequest

    with RawConnection(broker.host, broker.port) as conn:
        response = conn.request(PRODUCE, 8, transactional_id=None, acks=-1, timeout_ms=10000, topic_data=[
            ProduceRequest.TopicProduceData(name=topic, partition_data=[
                ProduceRequest.TopicProduceData.PartitionProduceData(index=0, records=records)])])
    return int(response.responses[0].partition_responses[0].error_code)


def list_offsets_by_time(broker: BrokerProcess, topic: str, timestamp: int) -> int:
    from kafka.protocol.consumer import ListOffsetsRequest

    with RawConnection(broker.host, broker.port) as conn:
        response = conn.request(LIST_OFFSETS, 4, replica_id=-1, isolation_level=0, topics=[
            ListOffsetsRequest.ListOffsetsTopic(name=topic, partitions=[
                ListOffsetsRequest.ListOffsetsTopic.ListOffsetsPartition(
                    partition_index=0, current_leader_epoch=-1, timestamp=timestamp)])])
    return int(response.topics[0].partitions[0].error_code)


def end_offset(broker: BrokerProcess, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "g-end"})
    try:
        return int(consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1])
    finally:
        consumer.close()


def test_decompression_bombs_on_every_path(broker_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bomb = zstd_bomb()
    assert len(bomb) < 64 * 1024, len(bomb)  # a few tens of KB on the wire, a GiB decompressed
    broker = broker_factory("broker", config={**HOSTILE_CONFIG, "log_cleaner_interval_ms": 200})
    create_topic(broker.bootstrap, "plain", partitions=1)
    create_topic(broker.bootstrap, "compacted", partitions=1, config={"cleanup.policy": "compact",
                                                                      "min.cleanable.dirty.ratio": "0.01",
                                                                      "segment.bytes": "1048576"})
    served(broker, "plain", "before")
    baseline, _ = memory(broker.pid)

    # 1. Produce, to an ordinary and to a compacted topic: validated, refused, nothing stored.
    for topic in ("plain", "compacted"):
        before = end_offset(broker, topic)
        assert produce_raw(broker, topic, bomb) == CORRUPT_MESSAGE
        assert end_offset(broker, topic) == before
    served(broker, "plain", "after-produce")

    # 2. Stored data the broker decodes itself: put the bomb in the logs as replication from a source that
    #    does not validate could (written into the segment files while the broker is stopped), then ask for
    #    an offset by time (which decodes the batch it lands in) and let the log cleaner at the compacted one
    #    (an empty segment after it makes the bomb's segment cleanable).
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    for i in range(50):
        producer.produce("compacted", key=b"k%d" % (i % 5), value=b"v", partition=0)
    assert producer.flush(20) == 0
    future = int(time.time() * 1000) + 3_600_000
    stored_bomb = zstd_bomb(timestamp=future)
    broker.stop()
    for topic in ("plain", "compacted"):
        directory = broker.data_dir / f"{topic}-0"
        segment = sorted(directory.glob("*.log"))[-1]
        data = segment.read_bytes()
        next_offset = list(iter_batch_headers(data))[-1].next_offset
        stored = bytearray(stored_bomb)
        struct.pack_into(">q", stored, 0, next_offset)
        segment.write_bytes(data + bytes(stored))
        if topic == "compacted":
            (directory / f"{next_offset + 1:020d}.log").write_bytes(b"")
    broker.start()
    baseline, _ = memory(broker.pid)
    assert list_offsets_by_time(broker, "plain", future - 60_000) == CORRUPT_MESSAGE
    wait_until(lambda: "compacted-0" in broker.log_text() and "decompresses to more than" in broker.log_text(),
               timeout=30, message="the log cleaner meeting the bomb")
    served(broker, "plain", "after-stored")
    _, peak = memory(broker.pid)
    assert peak - baseline < 3 * 64 * MiB, f"the bombs cost {(peak - baseline) // MiB} MiB"
    assert broker.log_text().count("log cleaner cannot clean compacted-0") == 1  # said once, not every pass


def test_valid_crc_batch_with_corrupt_records(hostile_broker: BrokerProcess) -> None:
    broker = hostile_broker
    batch = bytearray(build_batch([(b"k%d" % i, b"value", [], 1_000 + i) for i in range(10)]))
    batch[HEADER_SIZE] = 0x7E  # the first record says it is 63 bytes long
    write_crc(batch, 0)
    before = end_offset(broker, "plain")
    assert produce_raw(broker, "plain", bytes(batch)) == CORRUPT_MESSAGE
    assert end_offset(broker, "plain") == before
    served(broker, "plain", "after-corrupt")
