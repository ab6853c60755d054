"""Fetch responses served from segment files with os.sendfile, against a real broker process.

Several MiB of distinct records are fetched in responses larger than the loopback socket buffer (so the
broker's sender has to wait for the socket on a worker thread), every value is compared, and the
``umbra_fetch_sendfile_bytes_total`` metric shows which path served them. Retention deleting segments
under an in-flight response must neither crash the broker nor change a byte of that response.
"""

from __future__ import annotations

import os
import random
import re
import socket
import struct
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType
from harness import BrokerProcess, create_topic, http_get, wait_until
from kafka.protocol.consumer import FetchRequest

from umbra.protocol.codec import SCHEMAS
from umbra.records.batch import iter_batch_headers
from umbra.records.records import decode_batch

FETCH = 1
RECORDS = 1200
VALUE_BYTES = 10_000  # 12 MB in all: far more than a loopback socket buffer holds
MAX_BYTES = 30 << 20
TIMEOUT = 60


def _value(i: int) -> bytes:
    return random.Random(i).randbytes(VALUE_BYTES)


def _produce(bootstrap: str, topic: str, start: int = 0, count: int = RECORDS) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.size": 900_000,
                         "compression.type": "none", "acks": "all"})
    errors: list[object] = []
    for i in range(start, start + count):
        producer.produce(topic, _value(i), key=b"%d" % i, partition=0,
                         on_delivery=lambda err, _msg: errors.append(err) if err else None)
        producer.poll(0)
    assert producer.flush(TIMEOUT) == 0 and not errors


def _sendfile_bytes(broker: BrokerProcess) -> float:
    status, body = http_get(broker.admin_url + "/metrics")
    assert status == 200
    match = re.search(rb"^umbra_fetch_sendfile_bytes_total (\S+)$", body, re.MULTILINE)
    assert match, "umbra_fetch_sendfile_bytes_total is not exported"
    return float(match.group(1))


def _fetch_frame(topic: str, offset: int) -> bytes:
    request = SCHEMAS[FETCH].request[12](
        replica_id=-1, max_wait_ms=0, min_bytes=0, max_bytes=MAX_BYTES, isolation_level=0, session_id=0,
        session_epoch=-1, rack_id="", forgotten_topics_data=[],
        topics=[FetchRequest.FetchTopic(topic=topic, partitions=[FetchRequest.FetchTopic.FetchPartition(
            partition=0, current_leader_epoch=-1, fetch_offset=offset, last_fetched_epoch=-1, log_start_offset=-1,
            partition_max_bytes=MAX_BYTES)])])
    request.with_header(correlation_id=offset + 1, client_id="sendfile-test")
    return bytes(request.encode(header=True, framed=True))


def _read_exactly(sock: socket.socket, size: int) -> bytearray:
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = sock.recv_into(view[got:])
        if n == 0:
            raise ConnectionError(f"broker closed the connection after {got} of {size} bytes")
        got += n
    return buf


def _receive_fetch(sock: socket.socket) -> tuple[int, int, bytes]:
    """(error code, high watermark, record set) of the only partition of a Fetch v12 response."""
    (size,) = struct.unpack(">i", _read_exactly(sock, 4))
    frame = bytes(_read_exactly(sock, size))
    response = SCHEMAS[FETCH].response.decode(frame, version=12, header=True)
    partition = response.responses[0].partitions[0]
    return partition.error_code, partition.high_watermark, bytes(partition.records or b"")


def _check_records(records: bytes, first: int) -> int:
    """Every record from offset ``first`` on carries its own value; returns how many there are."""
    expected = first
    for header in iter_batch_headers(records):
        for record in decode_batch(records, header.position)[1]:
            if record.offset < first:
                continue  # the batch holding the fetch offset comes back whole
            assert record.offset == expected
            assert record.value == _value(record.offset), f"value of offset {record.offset} differs"
            expected += 1
    return expected - first


def _fetch_all(broker: BrokerProcess, topic: str, slow_reader: bool) -> int:
    with socket.create_connection(("127.0.0.1", broker.port), timeout=TIMEOUT) as sock:
        offset = 0
        while offset < RECORDS:
            sock.sendall(_fetch_frame(topic, offset))
            if slow_reader:
                time.sleep(0.3)  # the socket fills up: the rest goes from a worker waiting for POLLOUT
            error, high_watermark, records = _receive_fetch(sock)
            assert error == 0 and high_watermark == RECORDS
            got = _check_records(records, offset)
            assert got > 0
            offset += got
    return offset


def _consume_all(bootstrap: str, topic: str) -> None:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{topic}", "auto.offset.reset": "earliest",
                         "enable.auto.commit": False, "fetch.max.bytes": MAX_BYTES,
                         "max.partition.fetch.bytes": MAX_BYTES, "receive.message.max.bytes": MAX_BYTES + 1_000_000})
    try:
        consumer.subscribe([topic])
        seen = 0
        deadline = time.monotonic() + TIMEOUT
        while seen < RECORDS and time.monotonic() < deadline:
            for message in consumer.consume(500, timeout=1.0):
                assert message.error() is None, message.error()
                assert message.offset() == seen
                assert message.value() == _value(seen), f"value of offset {seen} differs"
                seen += 1
        assert seen == RECORDS
    finally:
        consumer.close()


@pytest.mark.timeout(180)
def test_large_fetches_are_sent_from_the_files(broker: BrokerProcess) -> None:
    create_topic(broker.bootstrap, "big", partitions=1)
    _produce(broker.bootstrap, "big")
    assert _sendfile_bytes(broker) == 0

    assert _fetch_all(broker, "big", slow_reader=True) == RECORDS
    sent = _sendfile_bytes(broker)
    assert sent >= RECORDS * VALUE_BYTES  # one ~12 MB region, all of it through sendfile

    _consume_all(broker.bootstrap, "big")
    assert _sendfile_bytes(broker) >= sent + RECORDS * VALUE_BYTES * 0.9


@pytest.mark.timeout(180)
def test_fetch_sendfile_false_copies_and_is_still_right(broker_factory) -> None:
    broker = broker_factory("no-sendfile", extra_args=["--set", "fetch_sendfile=false"])
    create_topic(broker.bootstrap, "big", partitions=1)
    _produce(broker.bootstrap, "big")
    assert _fetch_all(broker, "big", slow_reader=True) == RECORDS
    _consume_all(broker.bootstrap, "big")
    assert _sendfile_bytes(broker) == 0


def _open_deleted_files(pid: int, data_dir: Path) -> list[str]:
    found = []
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except FileNotFoundError:
            continue
        if target.startswith(str(data_dir)) and target.endswith("(deleted)"):
            found.append(target)
    return found


def _log_start_offset(broker: BrokerProcess, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "watermarks"})
    try:
        low, _ = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        return int(low)
    finally:
        consumer.close()


@pytest.mark.timeout(180)
def test_retention_deletes_segments_under_an_in_flight_response(broker_factory) -> None:
    broker = broker_factory("retention", config={"log_retention_check_interval_ms": 200})
    create_topic(broker.bootstrap, "doomed", partitions=1, config={"segment.bytes": "1048576"})
    _produce(broker.bootstrap, "doomed")
    with socket.create_connection(("127.0.0.1", broker.port), timeout=TIMEOUT) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.sendall(_fetch_frame("doomed", 0))
        # The broker is now stuck mid-response (nobody reads): its regions hold the segment files.
        wait_until(lambda: _sendfile_bytes(broker) > 0, timeout=10, message="the response to start")
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        resource = ConfigResource(ResourceType.TOPIC, "doomed", incremental_configs=[
            ConfigEntry("retention.bytes", "0", incremental_operation=AlterConfigOpType.SET)])
        admin.incremental_alter_configs([resource])[resource].result(timeout=TIMEOUT)
        wait_until(lambda: _log_start_offset(broker, "doomed") > 0, timeout=20, message="retention to delete segments")
        assert _open_deleted_files(broker.pid, broker.data_dir)  # the response still holds deleted segments

        error, high_watermark, records = _receive_fetch(sock)  # every byte as it was when the fetch was cut
        assert error == 0 and high_watermark == RECORDS
        assert _check_records(records, 0) == RECORDS

        start = _log_start_offset(broker, "doomed")
        sock.sendall(_fetch_frame("doomed", 0))
        error, _, _ = _receive_fetch(sock)
        assert error == 1  # OFFSET_OUT_OF_RANGE: the data is gone for new reads
        sock.sendall(_fetch_frame("doomed", start))
        error, _, records = _receive_fetch(sock)
        assert error == 0 and _check_records(records, start) == RECORDS - start

    wait_until(lambda: not _open_deleted_files(broker.pid, broker.data_dir), timeout=10,
               message="the deleted segments' fds to be closed")
    _produce(broker.bootstrap, "doomed", start=RECORDS, count=10)
    assert broker.running
