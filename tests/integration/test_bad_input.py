"""Hostile bytes on raw sockets: the broker answers or closes that connection, keeps serving, changes nothing."""

from __future__ import annotations

import os
import random
import socket
import struct

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from harness import create_topic, wait_until
from kafka.protocol.metadata import ApiVersionsRequest, ApiVersionsResponse
from kafka.protocol.producer import ProduceRequest, ProduceResponse

from umbra.records.records import build_batch

TOPIC = "precious"
RECORDS = 50


def _connect(broker) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", broker.port), timeout=10)
    sock.settimeout(10)
    return sock


def _read_frame_or_eof(sock: socket.socket) -> bytes | None:
    """One response frame, or None when the broker closed the connection."""
    def read_exactly(n: int) -> bytes | None:
        data = b""
        while len(data) < n:
            try:
                chunk = sock.recv(n - len(data))
            except ConnectionResetError:
                return None
            if not chunk:
                return None
            data += chunk
        return data

    size = read_exactly(4)
    if size is None:
        return None
    return read_exactly(struct.unpack(">i", size)[0])


def _stored_records(broker) -> list[tuple[int, bytes, bytes]]:
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "audit", "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(TOPIC, 0, 0)])
        out: list[tuple[int, bytes, bytes]] = []

        def read_all() -> bool:
            for message in consumer.consume(num_messages=RECORDS, timeout=0.5):
                assert message.error() is None, message.error()
                out.append((message.offset(), message.key(), message.value()))
            return len(out) >= RECORDS

        wait_until(read_all, timeout=20, message="all stored records")
        return out
    finally:
        consumer.close()


def _data_files(broker) -> dict[str, bytes]:
    root = broker.data_dir / f"{TOPIC}-0"
    return {p.name: p.read_bytes() for p in sorted(root.iterdir()) if p.suffix == ".log"}


@pytest.fixture
def loaded_broker(broker):
    create_topic(broker.bootstrap, TOPIC, partitions=1)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    for i in range(RECORDS):
        producer.produce(TOPIC, key=b"k%d" % i, value=b"v%d" % i, partition=0)
    assert producer.flush(20) == 0
    return broker


def _api_versions_frame(version: int, correlation_id: int = 1) -> bytes:
    request = ApiVersionsRequest[min(version, 3)](client_software_name="raw", client_software_version="1")
    request.with_header(correlation_id=correlation_id, client_id="raw")
    payload = bytearray(request.encode(header=True))
    struct.pack_into(">h", payload, 2, version)
    return struct.pack(">i", len(payload)) + bytes(payload)


def _produce_frame(records: bytes, correlation_id: int = 9) -> bytes:
    request = ProduceRequest[9](transactional_id=None, acks=-1, timeout_ms=5000, topic_data=[
        ProduceRequest.TopicProduceData(name=TOPIC, partition_data=[
            ProduceRequest.TopicProduceData.PartitionProduceData(index=0, records=records)])])
    request.with_header(correlation_id=correlation_id, client_id="raw")
    return bytes(request.encode(header=True, framed=True))


def test_bad_input_never_hurts_the_broker(loaded_broker) -> None:
    broker = loaded_broker
    before_records = _stored_records(broker)
    before_files = _data_files(broker)
    assert [r[0] for r in before_records] == list(range(RECORDS))

    def still_serving() -> None:
        assert broker.running, "the broker process died"
        assert _stored_records(broker) == before_records
        assert _data_files(broker) == before_files

    rng = random.Random(1234)
    # 1. random bytes, several shapes
    for size in (1, 7, 64, 4096):
        with _connect(broker) as sock:
            sock.sendall(bytes(rng.getrandbits(8) for _ in range(size)))
            sock.shutdown(socket.SHUT_WR)
            while _read_frame_or_eof(sock) is not None:
                pass
    still_serving()

    # 2. a length prefix far above socket.request.max.bytes: the connection is closed
    with _connect(broker) as sock:
        sock.sendall(struct.pack(">i", 2**31 - 1) + b"\x00" * 16)
        assert _read_frame_or_eof(sock) is None
    still_serving()

    # 3. a truncated request: the frame promises more than it delivers, then the client hangs up
    with _connect(broker) as sock:
        frame = _api_versions_frame(3)
        sock.sendall(frame[: len(frame) // 2])
        sock.shutdown(socket.SHUT_WR)
        assert _read_frame_or_eof(sock) is None
    # ... and a complete frame whose body is cut short: the codec refuses it and the connection closes
    with _connect(broker) as sock:
        payload = _api_versions_frame(3)[4:-3]
        sock.sendall(struct.pack(">i", len(payload)) + payload)
        assert _read_frame_or_eof(sock) is None
    still_serving()

    # 4. an unknown API key
    with _connect(broker) as sock:
        payload = struct.pack(">hhih", 12345, 0, 77, 3) + b"raw"
        sock.sendall(struct.pack(">i", len(payload)) + payload)
        assert _read_frame_or_eof(sock) is None
    still_serving()

    # 5. an unsupported version: ApiVersions answers UNSUPPORTED_VERSION (35) with the supported ranges
    with _connect(broker) as sock:
        sock.sendall(_api_versions_frame(99, correlation_id=31))
        frame = _read_frame_or_eof(sock)
        assert frame is not None
        assert struct.unpack_from(">i", frame)[0] == 31
        response = ApiVersionsResponse.decode(frame[4:], version=0)
        assert response.error_code == 35
        assert any(k.api_key == 0 for k in response.api_keys)
    # ... and a known API at a version this broker does not implement answers UNSUPPORTED_VERSION too
    with _connect(broker) as sock:
        request = ProduceRequest[2](acks=1, timeout_ms=1000, topic_data=[])
        request.with_header(correlation_id=32, client_id="raw")
        sock.sendall(bytes(request.encode(header=True, framed=True)))
        frame = _read_frame_or_eof(sock)
        assert frame is not None and struct.unpack_from(">i", frame)[0] == 32
    still_serving()

    # 6. a produce batch with a bad CRC gets CORRUPT_MESSAGE (2) and appends nothing
    batch = bytearray(build_batch([(b"evil", b"payload", [], 1_700_000_000_000)]))
    batch[-1] ^= 0xFF
    with _connect(broker) as sock:
        sock.sendall(_produce_frame(bytes(batch)))
        frame = _read_frame_or_eof(sock)
        assert frame is not None
        response = ProduceResponse.decode(frame, version=9, header=True)
        partition = response.responses[0].partition_responses[0]
        assert partition.error_code == 2, partition
        assert partition.error_message
        # the same connection still works: a good batch is appended at the next offset
        sock.sendall(_produce_frame(build_batch([(b"good", b"ok", [], 1_700_000_000_000)]), correlation_id=10))
        frame = _read_frame_or_eof(sock)
        assert frame is not None
        good = ProduceResponse.decode(frame, version=9, header=True).responses[0].partition_responses[0]
        assert (good.error_code, good.base_offset) == (0, RECORDS)
    assert broker.running
    assert _stored_records(broker) == before_records  # the first RECORDS are untouched
    after_files = _data_files(broker)
    for name, data in before_files.items():
        assert after_files[name].startswith(data)


def test_garbage_flood_is_bounded(broker) -> None:
    """Many connections sending junk at once: all are dropped, the broker stays up."""
    socks = []
    try:
        for _ in range(20):
            sock = _connect(broker)
            sock.sendall(os.urandom(2048))
            socks.append(sock)
        for sock in socks:
            sock.shutdown(socket.SHUT_WR)
            while _read_frame_or_eof(sock) is not None:
                pass
    finally:
        for sock in socks:
            sock.close()
    assert broker.running
    create_topic(broker.bootstrap, "after-flood", partitions=1)
